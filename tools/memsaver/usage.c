#include <stdio.h>
#include <string.h>

#include "tools/memsaver/commands.h"

int _msv_usage(FILE *f, const char *text, const char *cmd, int rc)
{
	if (f == stdout) {
		fputs(text, f);
		return rc;
	}
	const char *end = strstr(text, "\n\n");
	int len = end ? (int)(end + 1 - text) : (int)strlen(text);
	fprintf(f, "%.*sTry 'memsaver %s --help'.\n", len, text, cmd);
	return rc;
}
