// The protobuf-c runtime (libprotobuf-c), as Swift sees it.
#ifndef WEFT_C_PROTOBUF_C_SHIM_H
#define WEFT_C_PROTOBUF_C_SHIM_H
#include <protobuf-c/protobuf-c.h>
#endif
