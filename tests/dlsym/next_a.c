/* A preloaded library that, like many interposers (profilers, HAMi-core,
 * other allocators' shims), defines a symbol and forwards to the next
 * definition through dlsym(RTLD_NEXT, ...).  It looks the next one up from
 * its constructor, which glibc runs before libmemsaver.so's when it comes
 * later in LD_PRELOAD, and again when asked later. */
#include <dlfcn.h>

#define EXPORT __attribute__((visibility("default")))

typedef char (*probe_fn)(void);
static probe_fn at_init;

EXPORT char next_probe(void)
{
	return 'a';
}

__attribute__((constructor)) static void next_a_init(void)
{
	at_init = (probe_fn)dlsym(RTLD_NEXT, "next_probe");
}

/* What RTLD_NEXT gave the constructor: 'b' is right, 'a' is our own. */
EXPORT char next_a_at_init(void)
{
	return at_init ? at_init() : '0';
}

EXPORT char next_a_now(void)
{
	probe_fn f = (probe_fn)dlsym(RTLD_NEXT, "next_probe");
	return f ? f() : '0';
}
