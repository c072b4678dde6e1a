/*
 * weft-health-check: calls weft.v1.HealthService/Check on a Weft node and prints the answer.
 *
 * A Weft client in C from Proto/ and docs/wire-protocol.md alone: messages are the
 * protobuf-c code generated from Proto/weft/v1 (the copy committed in Sources/CWeftWire),
 * TLS is OpenSSL (TLS 1.3, ALPN "weft/1", the server's certificate checked against the
 * domain's root and its name). After the handshake it sends the 8-byte preface and three
 * frames on stream 1 (open, message, half_close), then reads frames until that stream's
 * close, answering pings. Build: see the Makefile beside it.
 *
 *   weft-health-check HOST:PORT CA.pem [--server-name NAME] [--service NAME]
 *
 * Exit status: 0 SERVING; 1 the call failed or the service is not serving (the status is
 * printed); 2 no connection, TLS failure or a protocol error; 64 bad arguments.
 */
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "weft/v1/frame.pb-c.h"
#include "weft/v1/health.pb-c.h"

#define PREFACE "WEFT\x01\x00\r\n"
#define PREFACE_BYTES 8
/* A receiver checks the length prefix against its limit before reading the body (§3). */
#define MAX_FRAME_BYTES (4u * 1024u * 1024u)
#define STREAM_ID 1u
#define CHECK_METHOD "/weft.v1.HealthService/Check"

enum { EXIT_SERVING = 0, EXIT_NOT_SERVING = 1, EXIT_CONNECTION = 2, EXIT_USAGE = 64 };

static void usage(void) {
    fprintf(stderr, "usage: weft-health-check HOST:PORT CA.pem [--server-name NAME] [--service NAME]\n");
}

/* The OpenSSL error queue as one line, for messages that tell the operator what failed. */
static const char *tls_error(void) {
    static char text[256];
    unsigned long code = ERR_get_error();
    if (code == 0) return "no detail from OpenSSL";
    ERR_error_string_n(code, text, sizeof text);
    return text;
}

/* Connects a TCP socket to host:port; -1 with a message on failure. */
static int connect_tcp(const char *host, const char *port) {
    struct addrinfo hints = {0}, *addresses = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int status = getaddrinfo(host, port, &hints, &addresses);
    if (status != 0) {
        fprintf(stderr, "error: cannot resolve %s: %s\n", host, gai_strerror(status));
        return -1;
    }
    int fd = -1, last_error = 0;
    for (struct addrinfo *address = addresses; address != NULL && fd < 0; address = address->ai_next) {
        fd = socket(address->ai_family, address->ai_socktype, address->ai_protocol);
        if (fd < 0) { last_error = errno; continue; }
        if (connect(fd, address->ai_addr, address->ai_addrlen) != 0) {
            last_error = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(addresses);
    if (fd < 0)
        fprintf(stderr, "error: cannot connect to %s:%s: %s; is the node running there?\n", host, port, strerror(last_error));
    return fd;
}

static int write_all(SSL *ssl, const uint8_t *bytes, size_t count) {
    while (count > 0) {
        int written = SSL_write(ssl, bytes, (int)count);
        if (written <= 0) {
            fprintf(stderr, "error: the connection broke while sending: %s\n", tls_error());
            return -1;
        }
        bytes += written;
        count -= (size_t)written;
    }
    return 0;
}

static int read_all(SSL *ssl, uint8_t *bytes, size_t count) {
    size_t done = 0;
    while (done < count) {
        int got = SSL_read(ssl, bytes + done, (int)(count - done));
        if (got <= 0) {
            fprintf(stderr, "error: the server closed the connection (%zu of %zu bytes of a frame read)\n", done, count);
            return -1;
        }
        done += (size_t)got;
    }
    return 0;
}

/* Sends one frame: flag 0, 4-byte big-endian length, the packed weft.v1.Frame. */
static int send_frame(SSL *ssl, const Weft__V1__Frame *frame) {
    size_t length = weft__v1__frame__get_packed_size(frame);
    uint8_t *buffer = malloc(5 + length);
    if (buffer == NULL) return -1;
    buffer[0] = 0;
    buffer[1] = (uint8_t)(length >> 24);
    buffer[2] = (uint8_t)(length >> 16);
    buffer[3] = (uint8_t)(length >> 8);
    buffer[4] = (uint8_t)length;
    weft__v1__frame__pack(frame, buffer + 5);
    int status = write_all(ssl, buffer, 5 + length);
    free(buffer);
    return status;
}

/* Reads one frame; NULL with a message on a broken connection or a malformed frame. */
static Weft__V1__Frame *receive_frame(SSL *ssl) {
    uint8_t prefix[5];
    if (read_all(ssl, prefix, sizeof prefix) != 0) return NULL;
    if (prefix[0] != 0) {
        fprintf(stderr, "error: unsupported frame flag %u\n", prefix[0]);
        return NULL;
    }
    uint32_t length = (uint32_t)prefix[1] << 24 | (uint32_t)prefix[2] << 16 | (uint32_t)prefix[3] << 8 | prefix[4];
    if (length > MAX_FRAME_BYTES) {
        fprintf(stderr, "error: grpc: received message larger than max (%u vs. %u)\n", length, MAX_FRAME_BYTES);
        return NULL;
    }
    uint8_t *body = malloc(length ? length : 1);
    if (body == NULL || read_all(ssl, body, length) != 0) {
        free(body);
        return NULL;
    }
    Weft__V1__Frame *frame = weft__v1__frame__unpack(NULL, length, body);
    free(body);
    if (frame == NULL) fprintf(stderr, "error: a frame from the server does not decode as weft.v1.Frame\n");
    return frame;
}

/* Sends the preface and the call: open, the CheckRequest, half_close. */
static int send_check(SSL *ssl, const char *service) {
    if (write_all(ssl, (const uint8_t *)PREFACE, PREFACE_BYTES) != 0) return -1;

    Weft__V1__FrameOpen open = WEFT__V1__FRAME_OPEN__INIT;
    open.method = CHECK_METHOD;
    Weft__V1__Duration timeout = WEFT__V1__DURATION__INIT;
    timeout.micros = 10 * 1000 * 1000; /* the server gives up after 10 s: DEADLINE_EXCEEDED */
    open.timeout = &timeout;
    Weft__V1__Frame frame = WEFT__V1__FRAME__INIT;
    frame.stream_id = STREAM_ID;
    frame.kind_case = WEFT__V1__FRAME__KIND_OPEN;
    frame.open = &open;
    if (send_frame(ssl, &frame) != 0) return -1;

    Weft__V1__CheckRequest request = WEFT__V1__CHECK_REQUEST__INIT;
    request.service = (char *)service;
    uint8_t payload[512];
    if (weft__v1__check_request__get_packed_size(&request) > sizeof payload) {
        fprintf(stderr, "error: the service name is too long\n");
        return -1;
    }
    Weft__V1__FrameMessage message = WEFT__V1__FRAME_MESSAGE__INIT;
    message.payload.len = weft__v1__check_request__pack(&request, payload);
    message.payload.data = payload;
    frame.kind_case = WEFT__V1__FRAME__KIND_MESSAGE;
    frame.message = &message;
    if (send_frame(ssl, &frame) != 0) return -1;

    Weft__V1__FrameHalfClose half_close = WEFT__V1__FRAME_HALF_CLOSE__INIT;
    frame.kind_case = WEFT__V1__FRAME__KIND_HALF_CLOSE;
    frame.half_close = &half_close;
    return send_frame(ssl, &frame);
}

/* Reads frames until stream 1 closes; prints the response and the status; the exit status. */
static int read_answer(SSL *ssl) {
    int result = EXIT_CONNECTION;
    int serving = 0;
    for (;;) {
        Weft__V1__Frame *frame = receive_frame(ssl);
        if (frame == NULL) return EXIT_CONNECTION;
        int done = 0;
        if (frame->kind_case == WEFT__V1__FRAME__KIND_PING) {
            /* Keepalive: answer at once, whatever else we wait for. */
            Weft__V1__FramePong pong = WEFT__V1__FRAME_PONG__INIT;
            pong.data = frame->ping->data;
            Weft__V1__Frame answer = WEFT__V1__FRAME__INIT;
            answer.kind_case = WEFT__V1__FRAME__KIND_PONG;
            answer.pong = &pong;
            if (send_frame(ssl, &answer) != 0) done = 1;
        } else if (frame->kind_case == WEFT__V1__FRAME__KIND_GO_AWAY && frame->go_away->status != NULL &&
                   frame->go_away->status->code != 0 && frame->go_away->status->code != 14) {
            /* Not a drain: the server refused bytes it received (a frame over its limit, a
               malformed one) and closes the connection; its status says why. */
            const Weft__V1__Status *status = frame->go_away->status;
            fprintf(stderr, "error: the server refused the connection: status %u %s: %s\n", status->code,
                    status->error_id ? status->error_id : "", status->message ? status->message : "");
            done = 1;
        } else if (frame->kind_case == WEFT__V1__FRAME__KIND_GO_AWAY && frame->go_away->last_stream_id < STREAM_ID) {
            fprintf(stderr, "error: the server is going away and did not take the call; retry on a new connection\n");
            done = 1;
        } else if (frame->stream_id == STREAM_ID && frame->kind_case == WEFT__V1__FRAME__KIND_MESSAGE) {
            Weft__V1__CheckResponse *response =
                weft__v1__check_response__unpack(NULL, frame->message->payload.len, frame->message->payload.data);
            if (response == NULL) {
                fprintf(stderr, "error: the response does not decode as weft.v1.CheckResponse\n");
                done = 1;
            } else {
                const ProtobufCEnumValue *status =
                    protobuf_c_enum_descriptor_get_value(&weft__v1__serving_status__descriptor, (int)response->status);
                printf("status: %s\n", status ? status->name : "(unknown value)");
                printf("detail: %s\n", response->detail);
                serving = response->status == WEFT__V1__SERVING_STATUS__SERVING_STATUS_SERVING;
                weft__v1__check_response__free_unpacked(response, NULL);
            }
        } else if (frame->stream_id == STREAM_ID && frame->kind_case == WEFT__V1__FRAME__KIND_CLOSE) {
            const Weft__V1__Status *status = frame->close->status;
            uint32_t code = status ? status->code : 0;
            if (code == 0) {
                result = serving ? EXIT_SERVING : EXIT_NOT_SERVING;
            } else {
                printf("call failed: status %u %s: %s\n", code, status->error_id, status->message);
                result = EXIT_NOT_SERVING;
            }
            done = 1;
        }
        /* window_update and frames of other streams need nothing from a one-call client. */
        weft__v1__frame__free_unpacked(frame, NULL);
        if (done) return result;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { usage(); return EXIT_USAGE; }
    const char *address = argv[1], *ca_file = argv[2], *server_name = NULL, *service = "";
    for (int index = 3; index < argc; index += 2) {
        if (index + 1 >= argc) { usage(); return EXIT_USAGE; }
        if (strcmp(argv[index], "--server-name") == 0) server_name = argv[index + 1];
        else if (strcmp(argv[index], "--service") == 0) service = argv[index + 1];
        else { usage(); return EXIT_USAGE; }
    }
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address || colon[1] == '\0') {
        fprintf(stderr, "error: address %s is not HOST:PORT (for example localhost:5011)\n", address);
        return EXIT_USAGE;
    }
    char host[256];
    size_t host_length = (size_t)(colon - address);
    if (host_length >= sizeof host) { fprintf(stderr, "error: host name too long\n"); return EXIT_USAGE; }
    memcpy(host, address, host_length);
    host[host_length] = '\0';
    if (server_name == NULL) server_name = host;

    SSL_CTX *context = SSL_CTX_new(TLS_client_method());
    if (context == NULL) { fprintf(stderr, "error: %s\n", tls_error()); return EXIT_CONNECTION; }
    SSL_CTX_set_min_proto_version(context, TLS1_3_VERSION);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(context, ca_file, NULL) != 1) {
        fprintf(stderr, "error: cannot load the root certificate %s: %s\n", ca_file, tls_error());
        SSL_CTX_free(context);
        return EXIT_CONNECTION;
    }
    static const unsigned char alpn[] = {6, 'w', 'e', 'f', 't', '/', '1'};
    SSL_CTX_set_alpn_protos(context, alpn, sizeof alpn);

    int fd = connect_tcp(host, colon + 1);
    if (fd < 0) { SSL_CTX_free(context); return EXIT_CONNECTION; }
    SSL *ssl = SSL_new(context);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, server_name);
    SSL_set1_host(ssl, server_name); /* the certificate must name the server */
    int result = EXIT_CONNECTION;
    if (SSL_connect(ssl) != 1) {
        long verify = SSL_get_verify_result(ssl);
        fprintf(stderr, "error: TLS handshake with %s failed: %s%s%s\n", address, tls_error(),
                verify != X509_V_OK ? "; certificate: " : "", verify != X509_V_OK ? X509_verify_cert_error_string(verify) : "");
    } else {
        const unsigned char *protocol = NULL;
        unsigned int protocol_length = 0;
        SSL_get0_alpn_selected(ssl, &protocol, &protocol_length);
        if (protocol_length != 6 || memcmp(protocol, "weft/1", 6) != 0) {
            fprintf(stderr, "error: %s did not agree on ALPN weft/1; is it a Weft node?\n", address);
        } else if (send_check(ssl, service) == 0) {
            result = read_answer(ssl);
        }
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(context);
    return result;
}
