/*
 * subcommand.c - the entry point of a subcommand built as its own program
 * (kjournal-publish, ...). kjournal runs it with the subcommand's arguments;
 * it can also be run directly.
 */
#include "cli.h"
#include "commands.h"

int main(int argc, char **argv)
{
    argv[0] = KJ_SUBCOMMAND_NAME;
    return KJ_SUBCOMMAND(argc, argv);
}
