/* _msv_pyframes_read in a process without Python: no frames, no crash. */
#include <errno.h>
#include <stdio.h>

#include "tracer/pyframes.h"

int main(void)
{
	char frames[8][MSV_PYFRAME_LEN];
	int rc = _msv_pyframes_init(), n = _msv_pyframes_read(frames, 8);

	if (rc != -ENOENT || n != 0 || _msv_pyframes_version()[0] != '\0' ||
	    _msv_pyframes_read(NULL, 0) != 0) {
		fprintf(stderr, "no_python: init %d read %d version '%s'\n", rc, n,
			_msv_pyframes_version());
		return 1;
	}
	printf("no_python: ok (init -ENOENT, 0 frames)\n");
	return 0;
}
