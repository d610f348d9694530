/* Calls that libc's interposable symbols do not cover: raw syscall(), glibc's
 * internal calls, a thread, fork, posix_spawn file actions, code made at run
 * time. Each prints "name: result" (errno on failure) for run_syscalls.rs. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CANARY "RKTIO-SYSCALL-CANARY-5e2b"
extern char **environ;

static void report(const char *what, long r) {
  if (r < 0) printf("%s: errno %d\n", what, errno);
  else printf("%s: %ld\n", what, r);
  fflush(stdout);
}

static void *thread_main(void *arg) {
  (void)arg;
  long fd = syscall(SYS_openat, AT_FDCWD, "/data/thread.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
  long n = syscall(SYS_write, fd, CANARY "-thread\n", strlen(CANARY "-thread\n"));
  syscall(SYS_close, fd);
  return (void *)n;
}

static volatile sig_atomic_t got;
static volatile uintptr_t handler_sp;
static void on_usr1(int s) {
  /* A handler's own system calls are covered too. */
  long fd = syscall(SYS_openat, AT_FDCWD, "/data/handler.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
  handler_sp = (uintptr_t)&fd;
  if (fd >= 0) syscall(SYS_close, fd);
  got = s;
}

static void on_plain(int s) { got = s; }

static int count_nftw;
static int nftw_cb(const char *p, const struct stat *s, int t, struct FTW *f) {
  (void)p; (void)s; (void)t; (void)f;
  count_nftw++;
  return 0;
}

int main(void) {
  /* raw syscall(): open, write, close on a sealed path */
  long fd = syscall(SYS_openat, AT_FDCWD, "/data/raw.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
  report("raw openat", fd >= 0 ? 0 : -1);
  report("raw write", syscall(SYS_write, fd, CANARY "\n", strlen(CANARY "\n")));
  report("raw close", syscall(SYS_close, fd));
  /* a path the stack cannot read: EFAULT, as from the kernel (no SIGSEGV
     handler here: the stack's fault is its own) */
  report("bad path open", open((const char *)-1, O_RDONLY));
  struct stat bad_st;
  report("bad path raw stat", syscall(SYS_newfstatat, AT_FDCWD, (const char *)8, &bad_st, 0));

  /* glibc's internal opendir/getdents: scandir, glob, nftw */
  struct dirent **names;
  int n = scandir("/data", &names, NULL, alphasort);
  report("scandir", n);
  glob_t g;
  report("glob", glob("/data/*.txt", 0, NULL, &g) == 0 ? (long)g.gl_pathc : -1);
  report("nftw", nftw("/data", nftw_cb, 8, FTW_PHYS) == 0 ? count_nftw : -1);

  /* freopen on a sealed path: libc's internal open */
  FILE *f = freopen("/data/raw.txt", "r", stdin);
  char line[128] = "";
  report("freopen", f && fgets(line, sizeof line, f) && strstr(line, CANARY) ? 1 : -1);

  /* tmpfile: /tmp is not writable under the default policy */
  errno = 0;
  report("tmpfile", tmpfile() ? 1 : -1);

  /* a thread whose calls are raw */
  pthread_t t;
  void *tr;
  pthread_create(&t, NULL, thread_main, NULL);
  pthread_join(t, &tr);
  report("thread write", (long)tr);

  /* a signal handler that makes system calls */
  signal(SIGUSR1, on_usr1);
  raise(SIGUSR1);
  report("signal", got);
  /* Without SA_ONSTACK it ran on this thread's stack, as under the kernel
   * (Boehm's collector scans from a handler's own stack pointer). */
  uintptr_t here = (uintptr_t)&t;
  report("handler on the thread's stack",
         handler_sp < here && here - handler_sp < (1 << 20) ? 1 : 0);
  /* SA_RESETHAND: the action is the default again once the handler ran */
  struct sigaction sa, q;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_plain;
  sa.sa_flags = SA_RESETHAND;
  got = 0;
  sigaction(SIGHUP, &sa, NULL);
  raise(SIGHUP);
  sigaction(SIGHUP, NULL, &q);
  report("resethand", got == SIGHUP && q.sa_handler == SIG_DFL ? 1 : -1);
  got = 0;
  report("SIGSYS handler", signal(SIGSYS, on_usr1) == SIG_ERR ? -1 : 0);
  raise(SIGSYS);
  report("SIGSYS raised", got);
  /* a mask the program sets holds (and never takes SIGSYS) */
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigaddset(&set, SIGSYS);
  sigprocmask(SIG_BLOCK, &set, NULL);
  sigprocmask(SIG_BLOCK, NULL, &old);
  report("mask", (sigismember(&old, SIGUSR2) ? 1 : 0) + (sigismember(&old, SIGSYS) ? 2 : 0));

  /* statvfs, fchmodat, linkat, renameat2, copy_file_range, splice, preadv2 */
  struct statvfs sv;
  int r = statvfs("/data", &sv);
  report("statvfs", r == 0 ? (long)sv.f_bsize : -1);
  report("fchmodat", fchmodat(AT_FDCWD, "/data/raw.txt", 0600, 0));
  struct stat st;
  stat("/data/raw.txt", &st);
  report("mode", st.st_mode & 0777);
  report("linkat", linkat(AT_FDCWD, "/data/raw.txt", AT_FDCWD, "/data/link.txt", 0));
  report("renameat2 noreplace", renameat2(AT_FDCWD, "/data/link.txt", AT_FDCWD, "/data/raw.txt", RENAME_NOREPLACE));
  report("renameat2", renameat2(AT_FDCWD, "/data/link.txt", AT_FDCWD, "/data/moved.txt", RENAME_NOREPLACE));
  int in = open("/data/raw.txt", O_RDONLY);
  int out = open("/data/copy.txt", O_CREAT | O_WRONLY, 0644);
  report("copy_file_range", copy_file_range(in, NULL, out, NULL, 10, 0));
  int pfd[2];
  pipe(pfd);
  report("splice", splice(in, NULL, pfd[1], NULL, 10, 0));
  char buf[16] = "";
  struct iovec iov = {buf, 6};
  report("preadv2", preadv2(in, &iov, 1, 0, 0));
  report("preadv2 bytes", memcmp(buf, "RKTIO-", 6) == 0 ? 1 : -1);

  /* mkfifo with a relative path under a virtual working directory */
  chdir("/data");
  report("mkfifo", mkfifo("fifo", 0600));
  struct stat fifo_st;
  report("fifo kept", stat("fifo", &fifo_st) == 0 && S_ISFIFO(fifo_st.st_mode) ? 1 : -1);
  /* kept in the image, never opened there: ENXIO, said on stderr */
  report("fifo open", open("fifo", O_RDONLY | O_NONBLOCK));
  report("relative open", open("raw.txt", O_RDONLY) >= 0 ? 1 : -1);

  /* an AF_UNIX socket named on the sealed mount: its inode is in the image,
     and a connect by that path reaches it */
  struct sockaddr_un ua = {.sun_family = AF_UNIX};
  strcpy(ua.sun_path, "/data/u.sock");
  int ls = socket(AF_UNIX, SOCK_STREAM, 0), cs = socket(AF_UNIX, SOCK_STREAM, 0);
  report("unix bind", bind(ls, (struct sockaddr *)&ua, sizeof ua));
  report("unix bind again", bind(cs, (struct sockaddr *)&ua, sizeof ua));
  struct stat us;
  report("unix inode", stat("/data/u.sock", &us) == 0 && S_ISSOCK(us.st_mode) ? 1 : -1);
  listen(ls, 1);
  report("unix connect", connect(cs, (struct sockaddr *)&ua, sizeof ua));
  int as = accept(ls, NULL, NULL);
  char ub[8] = {0};
  write(cs, "ping", 4);
  report("unix read", read(as, ub, sizeof ub));
  close(as);
  close(cs);
  close(ls);
  strcpy(ua.sun_path, "raw.txt");
  cs = socket(AF_UNIX, SOCK_STREAM, 0);
  report("unix connect to a file", connect(cs, (struct sockaddr *)&ua, sizeof ua));
  close(cs);

  /* code made at run time: openat + write + close as machine code */
  unsigned char code[] = {
      0x48, 0xc7, 0xc0, 0x01, 0x01, 0x00, 0x00, /* mov rax, 257 (openat) */
      0x0f, 0x05,                               /* syscall */
      0xc3,                                     /* ret */
  };
  void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memcpy(page, code, sizeof code);
  mprotect(page, 4096, PROT_READ | PROT_EXEC);
  long (*jit)(long, const char *, long, long) = (long (*)(long, const char *, long, long))page;
  long jfd = jit(AT_FDCWD, "/data/jit.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
  report("jit openat", jfd >= 0 ? 0 : jfd);
  report("jit write", write(jfd, CANARY "-jit\n", strlen(CANARY "-jit\n")));
  close(jfd);

  /* fork: the child's raw calls are still covered (a forked child may not use
   * the parent's mount: EIO) */
  pid_t pid = fork();
  if (pid == 0) {
    long c = syscall(SYS_openat, AT_FDCWD, "/data/child.txt", O_CREAT | O_WRONLY, 0644);
    _exit(c < 0 ? (errno == EIO ? 5 : 6) : 7);
  }
  int ws;
  waitpid(pid, &ws, 0);
  report("fork child", WEXITSTATUS(ws));

  /* posix_spawn with a file action on a sealed path */
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/data/spawned.txt", O_CREAT | O_WRONLY, 0644);
  char *argv[] = {"/bin/echo", CANARY "-spawn", NULL};
  int e = posix_spawn(&pid, "/bin/echo", &fa, NULL, argv, environ);
  if (e == 0) waitpid(pid, &ws, 0);
  report("spawn file action", e == 0 ? WEXITSTATUS(ws) : -e);

  /* a plain spawn works */
  char *argv2[] = {"/bin/true", NULL};
  e = posix_spawn(&pid, "/bin/true", NULL, NULL, argv2, environ);
  if (e == 0) waitpid(pid, &ws, 0);
  report("spawn", e == 0 ? WEXITSTATUS(ws) : -e);

  /* a daemon's closefrom(3), and numbers it guesses: the stack's own host
     descriptors (image, io_uring, ...) stay its own */
  report("close_range", syscall(SYS_close_range, 3, ~0U, 0));
  int hit = 0;
  for (int fd = 3; fd < 256; fd++)
    if (dup2(2, fd) < 0 && errno == EBADF) hit++;
  for (int fd = 3; fd < 256; fd++) close(fd);
  report("guessed numbers refused", hit > 0 ? 1 : -1);
  int after = open("/data/after.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
  report("write after closefrom", write(after, CANARY "-after\n", strlen(CANARY "-after\n")));
  report("fsync after closefrom", fsync(after));
  return 0;
}
