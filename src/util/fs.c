#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util/err.h"
#include "util/mem.h"

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

int fs_check_file(const char *path, const char *expected, int regular) {
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return st_fail(ST_EINPUT, "%s: no such file; expected %s", path, expected);
    return ST_OK;
  }
  if (S_ISDIR(st.st_mode))
    return st_fail(ST_EINPUT, "%s: is a directory; expected %s", path, expected);
  if (regular && !S_ISREG(st.st_mode))
    return st_fail(ST_EINPUT, "%s: is not a regular file (a device, pipe or socket); expected %s",
                   path, expected);
  return ST_OK;
}

/* ---- locks ------------------------------------------------------------------------------ */

/* What the holder wrote into the lock file (one line, trimmed), or "" */
static void holder_text_(int fd, char *buf, size_t n) {
  ssize_t got = pread(fd, buf, n - 1, 0);
  buf[got > 0 ? got : 0] = '\0';
  for (char *c = buf; *c; c++)
    if (*c == '\n' || *c == '\r') {
      *c = '\0';
      break;
    }
}

int fs_lock_take(const char *path, const char *about, fs_lock *lk) {
  lk->fd = -1;
  lk->path = NULL;
  for (int attempt = 0; attempt < 100; attempt++) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      return st_fail(ST_ERUNTIME, "%s: cannot create the lock file: %s", path, strerror(errno));
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET; /* l_start 0, l_len 0: the whole file */
    if (fcntl(fd, F_SETLK, &fl) != 0) {
      int err = errno;
      if (err == EACCES || err == EAGAIN) {
        char who[512];
        holder_text_(fd, who, sizeof who);
        struct flock q;
        memset(&q, 0, sizeof q);
        q.l_type = F_WRLCK;
        q.l_whence = SEEK_SET;
        long pid = fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK ? (long)q.l_pid : 0;
        close(fd);
        if (!who[0] && !pid) continue; /* released in between: try again */
        if (who[0]) return st_fail(ST_EINPUT, "%s is locked by %s", path, who);
        return st_fail(ST_EINPUT, "%s is locked by pid %ld (as the kernel reports it)", path, pid);
      }
      close(fd);
      return st_fail(FS_LOCK_UNSUPPORTED, "%s: the file system cannot lock files: %s", path,
                     strerror(err));
    }
    /* the holder before us may have removed the file after we opened it: then the lock is
     * on a file nobody else will see; start again with the file at `path` now */
    struct stat a, b;
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
      close(fd);
      continue;
    }
    size_t len = strlen(about);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, about, len, 0) != (ssize_t)len ||
        pwrite(fd, "\n", 1, (off_t)len) != 1) {
      int err = errno;
      close(fd);
      return st_fail(ST_ERUNTIME, "%s: cannot write the lock file: %s", path, strerror(err));
    }
    lk->fd = fd;
    lk->path = xstrdup(path);
    return ST_OK;
  }
  return st_fail(ST_ERUNTIME, "%s: the lock file keeps being replaced: giving up", path);
}

void fs_lock_release(fs_lock *lk) {
  if (!lk || lk->fd < 0) return;
  unlink(lk->path);
  close(lk->fd); /* closing drops the process's record locks on the file */
  free(lk->path);
  lk->fd = -1;
  lk->path = NULL;
}

uint64_t fs_free_bytes(const char *path) {
  struct statvfs v;
  if (statvfs(path, &v) != 0) {
    /* a file not created yet: ask its folder */
    char *d = xstrdup(path), *slash = strrchr(d, '/');
    int ok = 0;
    if (slash) {
      *(slash == d ? slash + 1 : slash) = '\0';
      ok = statvfs(d, &v) == 0;
    }
    free(d);
    if (!ok) return UINT64_MAX;
  }
  return (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
}

static const char *errno_name_(int err) {
  switch (err) {
  case ENOSPC: return "ENOSPC";
  case EDQUOT: return "EDQUOT";
  case EFBIG: return "EFBIG";
  case EIO: return "EIO";
  case EROFS: return "EROFS";
  default: return NULL;
  }
}

void fs_write_error(int err, const char *path, char *buf, size_t n) {
  char hb[32], code[16];
  const char *name = errno_name_(err);
  if (!name) snprintf(code, sizeof code, "errno %d", err), name = code;
  uint64_t fr = fs_free_bytes(path);
  if (fr == UINT64_MAX)
    snprintf(buf, n, "%s (%s)", strerror(err), name);
  else
    snprintf(buf, n, "%s (%s; the file system has %s free)", strerror(err), name,
             mem_human(fr, hb, sizeof hb));
}

int fs_reserve(const char *path, uint64_t bytes) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return st_fail(ST_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
  int r = bytes ? fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) : 0;
  int err = errno;
  close(fd);
  char why[160], hb[32];
  if (r == 0) return ST_OK;
  if (err == EOPNOTSUPP || err == ENOSYS) { /* cannot preallocate: the free space must do */
    uint64_t fr = fs_free_bytes(path);
    if (fr == UINT64_MAX || fr >= bytes) return ST_OK;
    err = ENOSPC;
  }
  fs_write_error(err, path, why, sizeof why);
  return st_fail(ST_ERUNTIME, "%s: cannot allocate the %s it needs: %s", path,
                 mem_human(bytes, hb, sizeof hb), why);
}

int fs_trim(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0 || truncate(path, st.st_size) != 0)
    return st_fail(ST_ERUNTIME, "%s: cannot truncate to its size: %s", path, strerror(errno));
  return ST_OK;
}
