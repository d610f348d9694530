/* A thread waits on an epoll before the program has any socket (before the
 * stack's network is up), as Go's runtime does with its one epoll; the main
 * thread then listens on port 9000 and adds the listener. The waiting thread
 * must see the listener readable when a client connects
 * (crates/cli/tests/run_net.rs, epoll_waiter_from_before_the_network_wakes). */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int epfd;

static void *waiter(void *arg) {
    (void)arg;
    struct epoll_event ev;
    int n = epoll_wait(epfd, &ev, 1, -1);
    printf("woke: %d event(s), data %llu\n", n, (unsigned long long)ev.data.u64);
    fflush(stdout);
    return NULL;
}

int main(void) {
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) { perror("epoll_create1"); return 1; }
    pthread_t t;
    pthread_create(&t, NULL, waiter, NULL);
    /* Give the waiter time to block (the outcome does not depend on it). */
    usleep(300 * 1000);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) { perror("socket"); return 1; }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9000)};
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 8)) { perror("bind/listen"); return 1; }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev)) { perror("epoll_ctl"); return 1; }
    printf("listening\n");
    fflush(stdout);
    pthread_join(t, NULL);
    int c = accept(s, NULL, NULL);
    printf("accepted: %d\n", c >= 0);
    return 0;
}
