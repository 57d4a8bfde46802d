/*
 * commands.h - the kjournal subcommands, one per cmd_<name>.c. Each takes the
 * command's own argv (argv[0] is the command name) and returns a KJ_EXIT_*
 * code (cli.h).
 */
#ifndef KJ_COMMANDS_H
#define KJ_COMMANDS_H

/* Journal inspection (read-only, except prune). */
int kj_cmd_sessions(int argc, char **argv);
int kj_cmd_show(int argc, char **argv);
int kj_cmd_events(int argc, char **argv);
int kj_cmd_stats(int argc, char **argv);
int kj_cmd_actions(int argc, char **argv);
int kj_cmd_verify(int argc, char **argv);
int kj_cmd_backup(int argc, char **argv);
int kj_cmd_prune(int argc, char **argv);

/* Ingest (cmd_publish.c, cmd_keygen.c). */
int kj_cmd_publish(int argc, char **argv);
int kj_cmd_keygen(int argc, char **argv);
int kj_cmd_ship(int argc, char **argv);

/* Reconciliation (cmd_recover.c). */
int kj_cmd_recover(int argc, char **argv);

#endif
