// libpq, PostgreSQL's C client library, as Swift sees it.
#ifndef WEFT_C_LIBPQ_SHIM_H
#define WEFT_C_LIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
