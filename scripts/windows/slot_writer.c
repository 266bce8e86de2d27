/* A Win32 program that does not use ipckit, for crates/ipckit/tests/windows_mailslot.rs (built by
 * scripts/test-windows.sh with x86_64-w64-mingw32-gcc; run under Wine beside ipckit).
 *
 * slot_writer NAME MSG...: open the mailslot NAME (\\.\mailslot\X) with CreateFileA, write each
 *   MSG as one message with WriteFile (an empty argument is an empty message), print
 *   "wrote <count>". Exit 3 (and "CreateFileA: <error>" on stderr) if the open fails, 4 if a
 *   write fails.
 */
#include <windows.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    HANDLE h = CreateFileA(argv[1], GENERIC_WRITE, FILE_SHARE_READ, NULL, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "CreateFileA: %lu\n", GetLastError());
        return 3;
    }
    int n = 0;
    for (int i = 2; i < argc; i++) {
        DWORD len = (DWORD)strlen(argv[i]), put = 0;
        if (!WriteFile(h, argv[i], len, &put, NULL) || put != len) {
            fprintf(stderr, "WriteFile: %lu\n", GetLastError());
            return 4;
        }
        n++;
    }
    printf("wrote %d\n", n);
    CloseHandle(h);
    return 0;
}
