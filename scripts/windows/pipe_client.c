/* A Win32 named pipe client that does not use ipckit, for crates/ipckit/tests/windows_pipe.rs
 * (built by scripts/test-windows.sh with x86_64-w64-mingw32-gcc; run under Wine beside ipckit).
 *
 * pipe_client NAME: wait for the pipe NAME (WaitNamedPipeA, 30 s), open it (CreateFileA,
 *   read/write), switch to message read mode (SetNamedPipeHandleState), send "ping from C" and
 *   read the reply in one TransactNamedPipe, then WriteFile "bye" and ReadFile the reply; print
 *   each reply as "reply=<text>".
 */
#include <windows.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    HANDLE h = INVALID_HANDLE_VALUE;
    for (int tries = 0; tries < 100 && h == INVALID_HANDLE_VALUE; tries++) {
        if (!WaitNamedPipeA(argv[1], 30000)) { fprintf(stderr, "WaitNamedPipeA: %lu\n", GetLastError()); return 3; }
        h = CreateFileA(argv[1], GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
        if (h == INVALID_HANDLE_VALUE && GetLastError() != ERROR_PIPE_BUSY) {
            fprintf(stderr, "CreateFileA: %lu\n", GetLastError()); return 4;
        }
    }
    if (h == INVALID_HANDLE_VALUE) return 4;
    DWORD mode = PIPE_READMODE_MESSAGE;
    if (!SetNamedPipeHandleState(h, &mode, NULL, NULL)) { fprintf(stderr, "SetNamedPipeHandleState: %lu\n", GetLastError()); return 5; }
    char reply[256];
    DWORD n = 0;
    const char *req = "ping from C";
    if (!TransactNamedPipe(h, (void *)req, (DWORD)strlen(req), reply, sizeof reply - 1, &n, NULL)) {
        fprintf(stderr, "TransactNamedPipe: %lu\n", GetLastError()); return 6;
    }
    reply[n] = 0;
    printf("reply=%s\n", reply);
    DWORD w = 0;
    if (!WriteFile(h, "bye", 3, &w, NULL)) { fprintf(stderr, "WriteFile: %lu\n", GetLastError()); return 7; }
    if (!ReadFile(h, reply, sizeof reply - 1, &n, NULL)) { fprintf(stderr, "ReadFile: %lu\n", GetLastError()); return 8; }
    reply[n] = 0;
    printf("reply=%s\n", reply);
    CloseHandle(h);
    return 0;
}
