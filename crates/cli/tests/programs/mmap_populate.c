/* A shared, read-only, prefaulted (MAP_POPULATE) mapping far larger than its
 * file, as bbolt under etcd makes one: 16 KiB of data, 4 GiB mapped. Prints
 * the first bytes it maps and the process's resident memory (VmRSS, KiB). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror("open"); return 1; }
    char page[4096];
    for (int i = 0; i < 4; i++) {
        memset(page, 'a' + i, sizeof page);
        if (write(fd, page, sizeof page) != (ssize_t)sizeof page) { perror("write"); return 1; }
    }
    size_t len = (size_t)4 << 30;
    char *m = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 1; }
    printf("data %c%c%c%c\n", m[0], m[4096], m[8192], m[12288]);
    FILE *st = fopen("/proc/self/status", "r");
    if (!st) { perror("status"); return 1; }
    char line[256];
    while (fgets(line, sizeof line, st))
        if (strncmp(line, "VmRSS:", 6) == 0) fputs(line, stdout);
    return 0;
}
