/* A shared object whose constructor leaves a mark: the file named by
   EDGESYNC_HOSTILE_MARKER. The attack suite ships it in a fleet bundle (as
   librdkafka's plugin.library.paths) and checks that it never ran. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void leave_a_mark(void) {
  const char* path = getenv("EDGESYNC_HOSTILE_MARKER");
  if (path == NULL) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd >= 0) close(fd);
}
