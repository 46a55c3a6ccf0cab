#include "util/fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/err.h"

static int mkdir_one_(const char *p) {
  if (mkdir(p, 0777) == 0) return ST_OK;
  int err = errno;
  struct stat st;
  if (stat(p, &st) == 0) /* EEXIST, or a component we may not create but that exists */
    return S_ISDIR(st.st_mode) ? ST_OK : st_fail(ST_EINPUT, "%s: not a directory", p);
  return st_fail(ST_ERUNTIME, "%s: cannot create the directory: %s", p, strerror(err));
}

int fs_mkdir_p(const char *dir) {
  char *p = xstrdup(dir);
  int rc = ST_OK;
  for (char *s = p + 1; *s && !rc; s++)
    if (*s == '/') {
      *s = '\0';
      rc = mkdir_one_(p);
      *s = '/';
    }
  if (!rc) rc = mkdir_one_(p);
  free(p);
  return rc;
}
