/* Small file-system helpers shared by the commands. */
#ifndef SPECTRAIN_UTIL_FS_H
#define SPECTRAIN_UTIL_FS_H

/* mkdir -p: create `dir` and every missing parent. An existing component that is not a
 * directory is ST_EINPUT ("PATH: not a directory"); any other failure ST_ERUNTIME naming
 * the component and the reason. */
int fs_mkdir_p(const char *dir);

#endif
