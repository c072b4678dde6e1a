import Foundation

/// Reads a node's `/metrics` and `/health` the way a scraper does: over real
/// HTTP (Python's standard library) and, for `/metrics`, through the
/// Prometheus project's own text parser (`prometheus_client`), so tests check
/// the exposition format with a parser Weft did not write.
public enum HTTPScrape {
    /// One sample as the Prometheus parser read it.
    public struct Sample: Decodable, Hashable {
        public let name: String
        public let labels: [String: String]
        public let value: Double
    }

    /// Fetches `url`; with `parse`, runs the body through `prometheus_client`'s
    /// text parser and returns its samples.
    public static func fetch(_ url: String, parse: Bool = false, method: String = "GET") async throws -> (status: Int, body: String, samples: [Sample]) {
        let script = """
            import json, sys, urllib.request, urllib.error
            url, parse, method = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
            try:
                response = urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=20)
                status, body = response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read().decode()
            samples = []
            if parse:
                from prometheus_client.parser import text_string_to_metric_families
                for family in text_string_to_metric_families(body):
                    for sample in family.samples:
                        samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value})
            print(json.dumps({"status": status, "body": body, "samples": samples}))
            """
        let outcome = try await TestSubprocess.run(["python3", "-c", script, url, parse ? "1" : "0", method])
        guard outcome.status == 0 else { throw ScrapeFailed(message: outcome.error) }
        let data = Data(outcome.output.utf8)
        struct Reply: Decodable { let status: Int; let body: String; let samples: [Sample] }
        let reply = try JSONDecoder().decode(Reply.self, from: data)
        return (reply.status, reply.body, reply.samples)
    }

    public struct ScrapeFailed: Error { public let message: String }

    public static func value(_ samples: [Sample], _ name: String, _ labels: [String: String]) -> Double {
        samples.first { $0.name == name && $0.labels == labels }?.value ?? 0
    }

}
