// Test-only LD_PRELOAD library: the first rd_kafka_consumer_close() of the
// process starts EDGESYNC_TEST_LATE_CLOSE_MS milliseconds late, as it can on
// a loaded machine between a program's last poll and its close. A rebalance
// that ends in that time is served by the close itself
// (unpack_service_test.cpp, UnpackService.AStopThatMeetsARebalance...).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

rd_kafka_resp_err_t rd_kafka_consumer_close(rd_kafka_t* rk) {
  static atomic_int calls;
  const char* ms = getenv("EDGESYNC_TEST_LATE_CLOSE_MS");
  if (ms != NULL && atomic_fetch_add(&calls, 1) == 0) {
    long v = atol(ms);
    struct timespec left = {v / 1000, (v % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
    // What the test looks for before the program's next log line.
    static const char kMarker[] = "late_close_shim: closing now\n";
    (void)!write(STDERR_FILENO, kMarker, sizeof(kMarker) - 1);
  }
  // The library's own function; copied through memcpy, as ISO C has no
  // conversion from dlsym's object pointer to a function pointer.
  void* sym = dlsym(RTLD_NEXT, "rd_kafka_consumer_close");
  if (sym == NULL) return RD_KAFKA_RESP_ERR__FAIL;
  rd_kafka_resp_err_t (*next)(rd_kafka_t*);
  memcpy(&next, &sym, sizeof(next));
  return next(rk);
}
