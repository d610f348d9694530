/* A bad address passed to a call the stack serves: Linux answers EFAULT; the
 * stack stops the program with a line (its handler may not jump out of the
 * stack mid-call, see trap.rs), and nothing after it runs. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>
static sigjmp_buf jb;
static void on_segv(int s) { (void)s; siglongjmp(jb, 1); }
int main(void) {
  signal(SIGSEGV, on_segv);
  int fd = open("/data/f", O_CREAT | O_RDWR, 0644);
  if (sigsetjmp(jb, 1) == 0) {
    long r = syscall(SYS_write, fd, (void *)16, 100); /* a bad address */
    printf("write: %ld\n", r);
  } else {
    printf("jumped out\n");
  }
  fflush(stdout);
  /* were the stack left mid-call, this would go to the host */
  int g = open("/data/after", O_CREAT | O_WRONLY, 0644);
  printf("after: %d\n", g);
  return 0;
}
