/* Cost per call: the libc entry point (librktio's fast path under rktio run)
 * and the raw system call (the trap under rktio run), on DIR/f.
 * Usage: calls DIR ITERATIONS; prints "name ns-per-call" lines. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

#define TIME(name, n, body)                          \
  do {                                               \
    double t0 = now();                               \
    for (long i = 0; i < (n); i++) { body; }         \
    printf("%s %.0f\n", name, (now() - t0) / (n));   \
  } while (0)

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  long n = atol(argv[2]);
  char path[4096];
  snprintf(path, sizeof path, "%s/f", argv[1]);
  int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
  if (fd < 0) { perror(path); return 1; }
  static char buf[4096];
  for (int i = 0; i < 16; i++) if (write(fd, buf, sizeof buf) != sizeof buf) return 1;
  struct stat st;
  volatile long sink = 0;
  TIME("getppid-libc", n, sink += getppid());
  TIME("getppid-raw", n, sink += syscall(SYS_getppid));
  TIME("stat-libc", n, sink += stat(path, &st));
  TIME("stat-raw", n, sink += syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0));
  TIME("pread-libc", n, sink += pread(fd, buf, sizeof buf, (i % 16) * 4096));
  TIME("pread-raw", n, sink += syscall(SYS_pread64, fd, buf, sizeof buf, (i % 16) * 4096));
  close(fd);
  return sink == 42;
}
