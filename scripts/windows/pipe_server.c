/* A Win32 named pipe server that does not use ipckit, for crates/ipckit/tests/windows_pipe.rs
 * (built by scripts/test-windows.sh with x86_64-w64-mingw32-gcc; run under Wine beside ipckit).
 *
 * pipe_server NAME: create the message-mode pipe NAME (CreateNamedPipeA, duplex, one instance,
 *   4096-byte buffers), print "ready", wait for one client (ConnectNamedPipe), then echo every
 *   message it reads (ReadFile, continued while ERROR_MORE_DATA) with one WriteFile, until the
 *   message "quit", answered with "bye". Then FlushFileBuffers, DisconnectNamedPipe, and print
 *   "served <messages read>".
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    HANDLE h = CreateNamedPipeA(argv[1], PIPE_ACCESS_DUPLEX,
                                PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT, 1, 4096,
                                4096, 0, NULL);
    if (h == INVALID_HANDLE_VALUE) { fprintf(stderr, "CreateNamedPipeA: %lu\n", GetLastError()); return 3; }
    printf("ready\n"); fflush(stdout);
    if (!ConnectNamedPipe(h, NULL) && GetLastError() != ERROR_PIPE_CONNECTED) {
        fprintf(stderr, "ConnectNamedPipe: %lu\n", GetLastError()); return 4;
    }
    size_t cap = 1 << 20;
    char *msg = malloc(cap);
    int served = 0;
    for (;;) {
        size_t len = 0;
        for (;;) {
            DWORD n = 0;
            BOOL ok = ReadFile(h, msg + len, (DWORD)(cap - len), &n, NULL);
            len += n;
            if (ok) break;
            if (GetLastError() != ERROR_MORE_DATA) { fprintf(stderr, "ReadFile: %lu\n", GetLastError()); return 5; }
            if (len == cap) { fprintf(stderr, "message too long\n"); return 6; }
        }
        served++;
        DWORD w = 0;
        if (len == 4 && memcmp(msg, "quit", 4) == 0) {
            if (!WriteFile(h, "bye", 3, &w, NULL)) return 7;
            break;
        }
        if (!WriteFile(h, msg, (DWORD)len, &w, NULL) || w != len) { fprintf(stderr, "WriteFile: %lu\n", GetLastError()); return 7; }
    }
    FlushFileBuffers(h);
    DisconnectNamedPipe(h);
    CloseHandle(h);
    printf("served %d\n", served);
    return 0;
}
