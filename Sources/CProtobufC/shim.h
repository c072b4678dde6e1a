// The protobuf-c runtime (libprotobuf-c), as Swift sees it.
#ifndef WEFT_C_PROTOBUF_C_SHIM_H
#define WEFT_C_PROTOBUF_C_SHIM_H
#include <protobuf-c/protobuf-c.h>

// The runtime's shared "" that unpacked messages point absent string fields
// at (an array of unknown size, which Swift does not import).
static inline const char *weft_protobuf_c_empty_string(void) { return protobuf_c_empty_string; }
#endif
