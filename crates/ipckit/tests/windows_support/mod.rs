//! What the Windows suites (`windows_*.rs`, run under Wine by
//! `scripts/test-windows.sh`) share.

use std::path::PathBuf;

/// A plain Win32 C program from `scripts/windows/` (it does not use
/// ipckit), compiled by `scripts/test-windows.sh` into `$IPCKIT_C_PEERS`
/// (a Unix path: Wine shows it on drive `Z:`). `None` (and a message) if it
/// is not there; a failure instead when `IPCKIT_REQUIRE_C_PEER=1` (CI).
pub fn c_peer(name: &str) -> Option<PathBuf> {
    let required = std::env::var_os("IPCKIT_REQUIRE_C_PEER").is_some_and(|v| v == "1");
    let Some(dir) = std::env::var_os("IPCKIT_C_PEERS") else {
        assert!(
            !required,
            "IPCKIT_C_PEERS is not set but IPCKIT_REQUIRE_C_PEER=1"
        );
        eprintln!("SKIPPED: IPCKIT_C_PEERS is not set: run scripts/test-windows.sh, which compiles scripts/windows/{name}.c");
        return None;
    };
    let dir = dir.to_string_lossy().into_owned();
    let exe = if dir.starts_with('/') {
        PathBuf::from(format!("Z:{}\\{name}.exe", dir.replace('/', "\\")))
    } else {
        PathBuf::from(dir).join(format!("{name}.exe"))
    };
    if !exe.exists() {
        assert!(
            !required,
            "{exe:?} does not exist but IPCKIT_REQUIRE_C_PEER=1"
        );
        eprintln!("SKIPPED: {exe:?} does not exist");
        return None;
    }
    Some(exe)
}
