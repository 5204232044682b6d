/* client/cli.c: synclog-cli.  PLACEHOLDER until the CLI lands (issue 5). */
#include <stdio.h>

#include "synclog.h"

int
main(void)
{
	fprintf(stderr, "synclog-cli: not built yet\n");
	return 2;
}
