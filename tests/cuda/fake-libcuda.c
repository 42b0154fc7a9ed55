/*
 * TEST DOUBLE of libcuda.so.1's checkpoint entry points, built by driver-ffi.test.ts. CI machines have
 * no NVIDIA driver; this library lets the koffi bindings be exercised for real: it records the bytes
 * of each argument struct it receives so the test can check the 64-byte layouts and the zeroed
 * reserved fields. Behaviour: pid 666 answers CUDA_ERROR_ILLEGAL_STATE (401); other pids succeed.
 */
#include <stdint.h>
#include <string.h>

static int driver_version = 13000;
static unsigned char last_args[64];
static unsigned char last_pairs[4 * 32];
static unsigned int last_pair_count;
static int last_pid;
static int init_calls;

void fake_set_driver_version(int version) { driver_version = version; }
int fake_init_calls(void) { return init_calls; }
int fake_last_pid(void) { return last_pid; }
void fake_last_args(unsigned char *out) { memcpy(out, last_args, sizeof last_args); }
unsigned int fake_last_pairs(unsigned char *out) { memcpy(out, last_pairs, sizeof last_pairs); return last_pair_count; }

int cuInit(unsigned int flags) { init_calls++; return flags == 0 ? 0 : 1; }
int cuDriverGetVersion(int *version) { *version = driver_version; return 0; }

int cuGetErrorName(int error, const char **name) {
  if (error == 401) { *name = "CUDA_ERROR_ILLEGAL_STATE"; return 0; }
  return 1;
}
int cuGetErrorString(int error, const char **text) {
  if (error == 401) { *text = "operation not permitted when the target is in this state"; return 0; }
  return 1;
}

static int record(int pid, const void *args) {
  last_pid = pid;
  memset(last_args, 0xAA, sizeof last_args); /* a NULL args pointer leaves the marker visible */
  if (args) memcpy(last_args, args, sizeof last_args);
  return pid == 666 ? 401 : 0;
}

int cuCheckpointProcessLock(int pid, const void *args) { return record(pid, args); }
int cuCheckpointProcessCheckpoint(int pid, const void *args) { return record(pid, args); }
int cuCheckpointProcessUnlock(int pid, const void *args) { return record(pid, args); }
int cuCheckpointProcessRestore(int pid, const void *args) {
  int result = record(pid, args);
  const unsigned char *pairs;
  memcpy(&pairs, args, sizeof pairs);
  memcpy(&last_pair_count, (const unsigned char *)args + 8, sizeof last_pair_count);
  memset(last_pairs, 0, sizeof last_pairs);
  if (pairs && last_pair_count <= 4) memcpy(last_pairs, pairs, last_pair_count * 32);
  return result;
}
int cuCheckpointProcessGetState(int pid, int *state) { last_pid = pid; *state = pid == 666 ? 3 : 2; return 0; }
int cuCheckpointProcessGetRestoreThreadId(int pid, int *tid) { last_pid = pid; *tid = pid + 7; return 0; }
