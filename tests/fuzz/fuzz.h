/* The fuzz targets' one entry point, shared by libFuzzer (make fuzz, built
 * with clang -fsanitize=fuzzer) and by the replay runner (replay.c, built
 * with the normal compiler into $(BUILD)/tests/test_fuzz_NAME and run by
 * make test over tests/fuzz/corpus/NAME and tests/fuzz/regress/NAME).
 *
 * A target returns 0 for every input: malformed input is expected and must
 * be refused with a message, never a crash, a hang, a leak or an abort. */
#ifndef MSV_FUZZ_H
#define MSV_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Each target defines FUZZ_NAME (policy, trace, report, control) before
 * including this header and, built with -DMSV_FUZZ_REPLAY, includes
 * replay.c at its end for a main() that replays
 * tests/fuzz/{corpus,regress}/FUZZ_NAME. */

#endif
