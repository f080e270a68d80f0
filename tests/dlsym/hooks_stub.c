/* An empty hook table: links saver/interpose.c without the wrappers, for the
 * interposer alone under qemu-aarch64 (tests/e2e/cross_aarch64.sh). */
#include "saver/hooks.h"

const struct msv_hook _msv_hooks[1];
const unsigned _msv_n_hooks = 0;
