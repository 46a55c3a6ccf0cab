/* Small file-system helpers shared by the commands. */
#ifndef SPECTRAIN_UTIL_FS_H
#define SPECTRAIN_UTIL_FS_H

#include <stddef.h>
#include <stdint.h>

/* mkdir -p: create `dir` and every missing parent. An existing component that is not a
 * directory is ST_EINPUT ("PATH: not a directory"); any other failure ST_ERUNTIME naming
 * the component and the reason. */
int fs_mkdir_p(const char *dir);

/* Before opening an input file: ST_EINPUT "PATH: is a directory; expected EXPECTED" (or
 * "does not exist", or, when `regular` is set, "is not a regular file" for devices, pipes
 * and sockets, which cannot be mapped), so the error says what the path should have been
 * instead of what mmap or the parser made of it. ST_OK otherwise (including unreadable
 * files: the open that follows names the reason). */
int fs_check_file(const char *path, const char *expected, int regular);

/* An exclusive lock on one file, held for as long as this process lives or until
 * fs_lock_release: a POSIX record lock (fcntl F_SETLK, which NFS forwards to its lock
 * manager), so the kernel drops it when the process dies, kill -9 included: a killed job
 * never leaves a stuck lock. The file (created when missing) says who holds it. */
typedef struct {
  int fd; /* -1: not held */
  char *path;
} fs_lock;

enum { FS_LOCK_UNSUPPORTED = -1 };

/* Take the lock on `path`, writing `about` ("pid 123 on host h, ...") into the file.
 * ST_OK: held. ST_EINPUT: another process holds it; the message names the file and what
 * its holder wrote there (and the pid the kernel reports). FS_LOCK_UNSUPPORTED: the file
 * system cannot lock (ENOLCK, ENOSYS, EOPNOTSUPP; message says so): nothing is held.
 * ST_ERUNTIME: the file cannot be created or written. */
int fs_lock_take(const char *path, const char *about, fs_lock *lk);
/* Remove the file and drop the lock (in that order, so a process waiting on the old file
 * notices it is gone and takes a new one). No-op when not held. */
void fs_lock_release(fs_lock *lk);

/* Space for a file about to be written, asked of the file system up front: allocate `bytes`
 * for the open file `path` (fallocate, FALLOC_FL_KEEP_SIZE: the size stays, blocks past the
 * end are freed again by fs_trim). ST_OK when allocated, or when the file system cannot
 * preallocate (EOPNOTSUPP, ENOSYS) and says it has that much free (statvfs); else ST_ERUNTIME
 * naming the file, the reason (ENOSPC, EDQUOT, ...), the bytes asked for and the bytes the
 * file system has free. */
int fs_reserve(const char *path, uint64_t bytes);
/* Free the blocks fs_reserve allocated past the file's end (truncate to its own size). */
int fs_trim(const char *path);
/* Bytes the file system holding `path` has free for this user (statvfs f_bavail), or
 * UINT64_MAX when it cannot say. */
uint64_t fs_free_bytes(const char *path);
/* Describe the error `err` of a write into `path` with the file system's free space:
 * "No space left on device (ENOSPC; the file system of DIR has 12.00 KiB free)". */
void fs_write_error(int err, const char *path, char *buf, size_t n);

#endif
