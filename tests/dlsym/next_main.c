/* Prints what next_a.c's dlsym(RTLD_NEXT, "next_probe") found at its
 * constructor and later, and which object's dlsym the process uses.
 * Expected with LD_PRELOAD=...:next_a.so:next_b.so, wherever libmemsaver.so
 * stands in that list: "init=b now=b dlsym=libmemsaver.so". */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	char (*at_init)(void) = (char (*)(void))dlsym(RTLD_DEFAULT, "next_a_at_init");
	char (*now)(void) = (char (*)(void))dlsym(RTLD_DEFAULT, "next_a_now");

	if (!at_init || !now) {
		fprintf(stderr, "next_main: next_a.so is not loaded\n");
		return 2;
	}
	Dl_info di;
	const char *from = dladdr((void *)dlsym, &di) && di.dli_fname ? di.dli_fname : "?";
	const char *base = strrchr(from, '/');
	printf("init=%c now=%c dlsym=%s\n", at_init(), now(), base ? base + 1 : from);
	return 0;
}
