/* Test programs tell the test what they did through small files the test
 * waits for: each is written under a temporary name and renamed, so it
 * appears complete or not at all. */
#pragma once

#include <stdio.h>

/* DIR/NAME holds TEXT; 0, or -1 when it could not be written. */
static inline int put_file(const char* dir, const char* name, const char* text) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE* f = fopen(tmp, "w");
    if (!f) return -1;
    int bad = fputs(text, f) < 0;
    if (fclose(f) != 0 || bad) return -1;
    return rename(tmp, path);
}
