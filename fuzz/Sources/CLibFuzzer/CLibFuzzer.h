#ifndef CLIBFUZZER_H
#define CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt, linked by `-sanitize=fuzzer`): parses the
/// libFuzzer flags in argv and runs `callback` on each input.
///
/// The fuzz targets call it from their own `main` because SwiftPM (tools
/// version 5.5 and later) links every Swift executable with
/// `--defsym main=<Target>_main`, so libFuzzer's own `main` is never used.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
