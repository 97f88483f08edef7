// C11 <threads.h> on the public pthread functions, for the ThreadSanitizer
// build only (EDGESYNC_TSAN; see CMakeLists.txt).
//
// librdkafka makes its threads, mutexes and condition variables with C11
// threads (thrd_create, mtx_lock, cnd_wait, call_once). glibc implements
// those on its internal pthread functions, which the sanitizer's interceptors
// never see, and gcc 12's libtsan has no interceptors for them: librdkafka's
// threads then run unknown to TSan and crash in its allocator at their first
// malloc (SEGV in SizeClassAllocator64LocalCache::Allocate), and their locks
// order nothing. This library is linked into every target of the TSan build,
// ahead of libc, so these definitions win; they call the pthread functions,
// which libtsan intercepts. The semantics are glibc's (nptl/thrd_*.c, mtx_*.c,
// cnd_*.c, call_once.c): thrd_t is a pthread_t, and mtx_t, cnd_t and
// once_flag are the same objects as pthread_mutex_t, pthread_cond_t and
// pthread_once_t.
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

// A pthread error number as a C11 result, as glibc maps it.
static int C11Result(int err) {
  switch (err) {
    case 0: return thrd_success;
    case ENOMEM: return thrd_nomem;
    case ETIMEDOUT: return thrd_timedout;
    case EBUSY: return thrd_busy;
    default: return thrd_error;
  }
}

// What a new thread runs; owned by the thread once it starts.
struct C11Start {
  thrd_start_t func;
  void* arg;
};

static void* RunC11Thread(void* p) {
  struct C11Start start = *(struct C11Start*)p;
  free(p);
  return (void*)(intptr_t)start.func(start.arg);
}

int thrd_create(thrd_t* thr, thrd_start_t func, void* arg) {
  struct C11Start* start = malloc(sizeof *start);
  if (start == NULL) return thrd_nomem;
  start->func = func;
  start->arg = arg;
  int err = pthread_create(thr, NULL, RunC11Thread, start);
  if (err != 0) free(start);
  return C11Result(err);
}

int thrd_join(thrd_t thr, int* res) {
  void* ret;
  if (pthread_join(thr, &ret) != 0) return thrd_error;
  if (res != NULL) *res = (int)(intptr_t)ret;
  return thrd_success;
}

int thrd_detach(thrd_t thr) { return C11Result(pthread_detach(thr)); }

int mtx_init(mtx_t* m, int type) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  if (type & mtx_recursive) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  int err = pthread_mutex_init((pthread_mutex_t*)m, &attr);
  pthread_mutexattr_destroy(&attr);
  return C11Result(err);
}

int mtx_lock(mtx_t* m) { return C11Result(pthread_mutex_lock((pthread_mutex_t*)m)); }
int mtx_trylock(mtx_t* m) { return C11Result(pthread_mutex_trylock((pthread_mutex_t*)m)); }
int mtx_timedlock(mtx_t* restrict m, const struct timespec* restrict deadline) {
  return C11Result(pthread_mutex_timedlock((pthread_mutex_t*)m, deadline));
}
int mtx_unlock(mtx_t* m) { return C11Result(pthread_mutex_unlock((pthread_mutex_t*)m)); }
void mtx_destroy(mtx_t* m) { pthread_mutex_destroy((pthread_mutex_t*)m); }

int cnd_init(cnd_t* c) { return C11Result(pthread_cond_init((pthread_cond_t*)c, NULL)); }
int cnd_signal(cnd_t* c) { return C11Result(pthread_cond_signal((pthread_cond_t*)c)); }
int cnd_broadcast(cnd_t* c) { return C11Result(pthread_cond_broadcast((pthread_cond_t*)c)); }
int cnd_wait(cnd_t* c, mtx_t* m) {
  return C11Result(pthread_cond_wait((pthread_cond_t*)c, (pthread_mutex_t*)m));
}
int cnd_timedwait(cnd_t* restrict c, mtx_t* restrict m, const struct timespec* restrict deadline) {
  return C11Result(pthread_cond_timedwait((pthread_cond_t*)c, (pthread_mutex_t*)m, deadline));
}
void cnd_destroy(cnd_t* c) { pthread_cond_destroy((pthread_cond_t*)c); }

void call_once(once_flag* flag, void (*func)(void)) { pthread_once((pthread_once_t*)flag, func); }
