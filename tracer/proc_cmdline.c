#include "proc_cmdline.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

size_t _msv_proc_cmdline(int pid, char *buf, size_t len)
{
	char p[64];
	if (pid)
		snprintf(p, sizeof(p), "/proc/%d/cmdline", pid);
	else
		snprintf(p, sizeof(p), "/proc/self/cmdline");
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n < 0)
		n = 0;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
	return (size_t)n;
}
