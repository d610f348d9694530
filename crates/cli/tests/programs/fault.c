/* A bad address passed to a call the stack serves: an unmapped one is EFAULT,
 * as from Linux; a read-only buffer to read into (the stack probes only that
 * it is mapped) faults in the stack, which stops the program with a line (its
 * handler may not jump out of the stack mid-call, see trap.rs), and nothing
 * after it runs. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
static sigjmp_buf jb;
static void on_segv(int s) { (void)s; siglongjmp(jb, 1); }
int main(void) {
  signal(SIGSEGV, on_segv);
  int fd = open("/data/f", O_CREAT | O_RDWR, 0644);
  long w = syscall(SYS_write, fd, (void *)16, 100); /* unmapped */
  printf("unmapped: %ld errno %d\n", w, errno);
  write(fd, "hello", 5);
  lseek(fd, 0, SEEK_SET);
  fflush(stdout);
  static const char ro[64] = "read-only";
  if (sigsetjmp(jb, 1) == 0) {
    long r = syscall(SYS_read, fd, (void *)ro, 5); /* read-only */
    printf("read: %ld\n", r);
  } else {
    printf("jumped out\n");
  }
  fflush(stdout);
  /* were the stack left mid-call, this would go to the host */
  int g = open("/data/after", O_CREAT | O_WRONLY, 0644);
  printf("after: %d\n", g);
  return 0;
}
