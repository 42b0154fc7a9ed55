/*
 * TEST DOUBLE of a CUDA process together with the CUDA driver's part inside it (CI machines have no GPU),
 * built statically by tests/gpu/fake-gpu/driver.ts and run in the busybox test container:
 *   fake-gpu-workload STATE_DIR MIB
 * "Device memory" is a malloc'd buffer of MIB MiB with a deterministic pattern. The main thread counts like
 * an inference loop making a "CUDA call" per step. A second thread plays the driver's restore thread and
 * serves the fake driver's requests, each a file STATE_DIR/request "SEQ OP [ARG]" answered in
 * STATE_DIR/reply "SEQ RESULT STATE VALUE", the way the real driver acts inside the process:
 *   lock        the counting thread blocks at its next call (RUNNING -> LOCKED)
 *   checkpoint  device memory is copied into a fresh anonymous mapping (the host copy), then freed
 *   restore     device memory is allocated again and filled from the host copy, which is unmapped
 *   unlock      counting goes on (LOCKED -> RUNNING)
 *   state       the state; checksum: FNV-1a of device memory (not while checkpointed)
 *   connect P   connects a unix socket to P and keeps it (an external resource CRIU refuses to dump)
 * STATE_DIR/tid holds the restore thread's id, STATE_DIR/counter the count. It opens /dev/nvidia-fake
 * and keeps it open, which makes the agent take it for a CUDA process.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

enum state { RUNNING = 0, LOCKED = 1, CHECKPOINTED = 2 };
static const char *names[] = { "running", "locked", "checkpointed" };

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t unlocked = PTHREAD_COND_INITIALIZER;
static pthread_cond_t parked_changed = PTHREAD_COND_INITIALIZER;
static enum state state = RUNNING;
/* the counting thread waits in its "CUDA call" (holding nothing) */
static int parked;
static unsigned char *device;
static unsigned char *host_copy;
static size_t bytes;
static const char *dir;

static void write_file(const char *name, const char *text) {
  char path[4096], tmp[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  if (write(fd, text, strlen(text)) < 0) perror("write");
  close(fd);
  rename(tmp, path);
}

static uint64_t checksum(const unsigned char *data) {
  uint64_t hash = 1469598103934665603ULL;
  for (size_t i = 0; i < bytes; i++) hash = (hash ^ data[i]) * 1099511628211ULL;
  return hash;
}

/* One request; returns 0 or a CUresult-like error (401 illegal state, 2 out of memory, 999 other). */
static int handle(const char *op, const char *arg, uint64_t *value) {
  if (strcmp(op, "lock") == 0) {
    if (state != RUNNING) return 401;
    state = LOCKED;
    /* Like the driver's lock, which waits for calls in flight: done once the counting thread waits. */
    while (!parked) pthread_cond_wait(&parked_changed, &mutex);
  } else if (strcmp(op, "checkpoint") == 0) {
    if (state != LOCKED) return 401;
    host_copy = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (host_copy == MAP_FAILED) return 2;
    memcpy(host_copy, device, bytes);
    free(device);
    device = NULL;
    state = CHECKPOINTED;
  } else if (strcmp(op, "restore") == 0) {
    if (state != CHECKPOINTED) return 401;
    device = malloc(bytes);
    if (!device) return 2;
    memcpy(device, host_copy, bytes);
    munmap(host_copy, bytes);
    host_copy = NULL;
    state = LOCKED;
  } else if (strcmp(op, "unlock") == 0) {
    if (state != LOCKED) return 401;
    state = RUNNING;
    pthread_cond_broadcast(&unlocked);
  } else if (strcmp(op, "checksum") == 0) {
    if (!device) return 401;
    *value = checksum(device);
  } else if (strcmp(op, "connect") == 0) {
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    if (strlen(arg) >= sizeof address.sun_path) return 999;
    memcpy(address.sun_path, arg, strlen(arg) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) < 0) return 999;
  } else if (strcmp(op, "state") != 0) {
    return 999;
  }
  return 0;
}

static void *restore_thread(void *unused) {
  (void)unused;
  char path[4096], tid[32], line[4352], op[32], arg[4096], reply[128];
  long last = 0;
  snprintf(path, sizeof path, "%s/request", dir);
  snprintf(tid, sizeof tid, "%ld\n", (long)syscall(SYS_gettid));
  write_file("tid", tid);
  for (;;) {
    usleep(1000);
    FILE *file = fopen(path, "r");
    if (!file) continue;
    long seq = 0;
    arg[0] = 0;
    int fields = fgets(line, sizeof line, file) ? sscanf(line, "%ld %31s %4095s", &seq, op, arg) : 0;
    fclose(file);
    if (fields < 2 || seq <= last) continue;
    last = seq;
    uint64_t value = 0;
    pthread_mutex_lock(&mutex);
    int result = handle(op, arg, &value);
    snprintf(reply, sizeof reply, "%ld %d %s %llu\n", seq, result, names[state], (unsigned long long)value);
    pthread_mutex_unlock(&mutex);
    write_file("reply", reply);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s STATE_DIR MIB\n", argv[0]);
    return 2;
  }
  dir = argv[1];
  bytes = (size_t)atol(argv[2]) << 20;
  device = malloc(bytes);
  if (!device) return 1;
  for (size_t i = 0; i < bytes; i++) device[i] = (unsigned char)((i * 2654435761u) >> 13);
  if (open("/dev/nvidia-fake", O_RDONLY | O_CREAT, 0644) < 0) perror("/dev/nvidia-fake");
  pthread_t thread;
  pthread_create(&thread, NULL, restore_thread, NULL);
  char text[32];
  for (unsigned long counter = 1;; counter++) {
    pthread_mutex_lock(&mutex);
    while (state != RUNNING) {
      parked = 1;
      pthread_cond_broadcast(&parked_changed);
      pthread_cond_wait(&unlocked, &mutex);
    }
    parked = 0;
    pthread_mutex_unlock(&mutex);
    snprintf(text, sizeof text, "%lu\n", counter);
    write_file("counter", text);
    usleep(10000);
  }
}
