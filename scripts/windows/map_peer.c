/* A Win32 program that does not use ipckit, for crates/ipckit/tests/windows_map.rs (built by
 * scripts/test-windows.sh with x86_64-w64-mingw32-gcc; run under Wine beside ipckit).
 *
 * map_peer NAME MUTEX: create the plain section NAME (CreateFileMappingA, 4096 bytes, no ipckit
 *   header) and write "from C" at offset 0; create the mutex MUTEX owned (CreateMutexA), print
 *   "locked". On a line on stdin: ReleaseMutex, print "released". On the next line: try the
 *   mutex without waiting and print "busy" if it is held elsewhere (else fail with 5), then wait
 *   for it (60 s at most, else fail with 6) and print "got <the 9 bytes at offset 64>". Exit
 *   holding the mutex, which the system then marks abandoned.
 */
#include <windows.h>
#include <stdio.h>
static int line(void) {
    char buf[64];
    return fgets(buf, sizeof buf, stdin) != NULL;
}
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 4096, argv[1]);
    if (!h) { fprintf(stderr, "CreateFileMappingA: %lu\n", GetLastError()); return 3; }
    char *p = MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 0);
    if (!p) { fprintf(stderr, "MapViewOfFile: %lu\n", GetLastError()); return 3; }
    memcpy(p, "from C", 6);
    HANDLE m = CreateMutexA(NULL, TRUE, argv[2]);
    if (!m) { fprintf(stderr, "CreateMutexA: %lu\n", GetLastError()); return 3; }
    printf("locked\n"); fflush(stdout);
    if (!line()) return 4;
    if (!ReleaseMutex(m)) { fprintf(stderr, "ReleaseMutex: %lu\n", GetLastError()); return 4; }
    printf("released\n"); fflush(stdout);
    if (!line()) return 4;
    if (WaitForSingleObject(m, 0) != WAIT_TIMEOUT) { fprintf(stderr, "not held by ipckit\n"); return 5; }
    printf("busy\n"); fflush(stdout);
    if (WaitForSingleObject(m, 60000) != WAIT_OBJECT_0) { fprintf(stderr, "no mutex\n"); return 6; }
    printf("got %.9s\n", p + 64); fflush(stdout);
    return 0;
}
