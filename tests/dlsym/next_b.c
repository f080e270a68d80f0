/* The next definition of next_probe after next_a.c's. */
char next_probe(void)
{
	return 'b';
}
