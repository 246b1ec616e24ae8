/*
 * keygen.c — deepminectl keygen <path>: a new secret key file
 * (DeepMineSecretKeyFile), 32 random bytes, mode 0600. No database.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"

int dm_cmd_keygen(dm_cli *c)
{
    unsigned char key[32];
    const char *path = c->argv[0];
    ssize_t n;
    int ok;
    /* O_EXCL: never overwrite a key (every session would die with it). */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

    if (fd < 0) {
        fprintf(stderr, "%s: cannot create %s: %s\n", c->tool->name, path, strerror(errno));
        return DM_CLI_FAIL;
    }
    randombytes_buf(key, sizeof(key));
    n = write(fd, key, sizeof(key));
    sodium_memzero(key, sizeof(key));
    ok = n == (ssize_t)sizeof(key) && fsync(fd) == 0;
    if (close(fd) != 0) {
        ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "%s: cannot write %s: %s\n", c->tool->name, path, strerror(errno));
        unlink(path);
        return DM_CLI_FAIL;
    }
    printf("wrote a new 32-byte secret key to %s (mode 0600)\n", path);
    return DM_CLI_OK;
}
