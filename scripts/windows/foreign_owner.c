/* A Win32 program that does not use ipckit, for crates/ipckit/tests/windows_sync.rs (built by
 * scripts/test-windows.sh with x86_64-w64-mingw32-gcc; run under Wine beside ipckit).
 *
 * foreign_owner SECTION MUTEX: create the section SECTION (4096 bytes) and the mutex MUTEX with
 *   a security descriptor whose owner is not the calling user but the Users group (S-1-5-32-545)
 *   and whose DACL grants Everyone all access ("O:BUD:P(A;;GA;;;WD)"): what another user's
 *   objects look like to ipckit, as far as one user can make them. Windows lets a process name
 *   as owner only a SID of its token that may own objects, so there the calls may fail (exit 3);
 *   Wine allows it. Print "ready", then exit on a line on stdin.
 */
#include <windows.h>
#include <sddl.h>
#include <stdio.h>
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    PSECURITY_DESCRIPTOR sd = NULL;
    if (!ConvertStringSecurityDescriptorToSecurityDescriptorA("O:BUD:P(A;;GA;;;WD)", SDDL_REVISION_1,
                                                              &sd, NULL)) {
        fprintf(stderr, "ConvertStringSecurityDescriptorToSecurityDescriptorA: %lu\n", GetLastError());
        return 3;
    }
    SECURITY_ATTRIBUTES sa = {sizeof sa, sd, FALSE};
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, &sa, PAGE_READWRITE, 0, 4096, argv[1]);
    if (!h) { fprintf(stderr, "CreateFileMappingA: %lu\n", GetLastError()); return 3; }
    HANDLE m = CreateMutexA(&sa, FALSE, argv[2]);
    if (!m) { fprintf(stderr, "CreateMutexA: %lu\n", GetLastError()); return 3; }
    printf("ready\n");
    fflush(stdout);
    char buf[16];
    fgets(buf, sizeof buf, stdin);
    CloseHandle(m);
    CloseHandle(h);
    LocalFree(sd);
    return 0;
}
