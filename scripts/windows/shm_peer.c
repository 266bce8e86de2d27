/* A Win32 program that does not use ipckit, for crates/ipckit/tests/windows_shm.rs (built by
 * scripts/test-windows.sh with x86_64-w64-mingw32-gcc; run under Wine beside ipckit).
 *
 * shm_peer open NAME: open the ipckit mapping NAME (OpenFileMappingA), check its 64-byte header
 *   (docs/PROTOCOL.md), copy the 16 bytes at data offset 0 to offset 16, write "hello from C" at
 *   offset 32, print "len=<data length> creator=<creator pid>".
 * shm_peer serve NAME: create the plain section NAME (CreateFileMappingA, 4096 bytes, no
 *   header), write "raw from C" at 0, print "ready", wait for a line on stdin, then check that
 *   offset 16 holds "raw from Rust" and print "got reply".
 */
#include <windows.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    if (strcmp(argv[1], "open") == 0) {
        HANDLE h = OpenFileMappingA(FILE_MAP_READ | FILE_MAP_WRITE, FALSE, argv[2]);
        if (!h) { fprintf(stderr, "OpenFileMappingA: %lu\n", GetLastError()); return 3; }
        unsigned char *p = MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 0);
        if (!p) { fprintf(stderr, "MapViewOfFile: %lu\n", GetLastError()); return 4; }
        if (memcmp(p, "IPCKSHM1", 8) != 0) { fprintf(stderr, "bad magic\n"); return 5; }
        unsigned long long len; memcpy(&len, p + 16, 8);
        unsigned int pid; memcpy(&pid, p + 24, 4);
        unsigned char *data = p + 64;
        memcpy(data + 16, data, 16);
        memcpy(data + 32, "hello from C", 12);
        printf("len=%llu creator=%u\n", len, pid);
        UnmapViewOfFile(p); CloseHandle(h);
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0) {
        HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 4096, argv[2]);
        if (!h) { fprintf(stderr, "CreateFileMappingA: %lu\n", GetLastError()); return 3; }
        unsigned char *p = MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 0);
        if (!p) return 4;
        memcpy(p, "raw from C", 10);
        printf("ready\n"); fflush(stdout);
        char line[16];
        if (!fgets(line, sizeof line, stdin)) return 6;
        if (memcmp(p + 16, "raw from Rust", 13) != 0) { fprintf(stderr, "no reply\n"); return 7; }
        printf("got reply\n");
        return 0;
    }
    return 2;
}
