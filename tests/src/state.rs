//! The state `passthru setup` saves so `passthru cleanup` can restore a device, and the two
//! commands built on it.
//!
//! Root acts on this state (unbinding and binding drivers, appending BDFs to a program's
//! arguments), so it must be state root wrote. It lives in a directory only the caller can
//! write: `/run/passthru` for root, `$XDG_RUNTIME_DIR/passthru` for anyone else (or a directory
//! given with `--state-dir`). Everything read back is checked before it is used:
//!
//! * the store's parent is owned by root or the caller and not writable by others (unless
//!   sticky, like `/tmp`);
//! * the store, each `<bdf>/` directory and each file are owned by the caller, not group- or
//!   world-writable and not symlinks (opened with `O_NOFOLLOW`, checked on the open descriptor);
//! * contents: the directory name is a PCI address that exists in sysfs, `driver` is empty or a
//!   driver registered under `/sys/bus/pci/drivers`, `driver_override` is empty or a plain
//!   driver name, `sriov_numvfs` a count no larger than the device's `sriov_totalvfs`; no other
//!   entries.
//!
//! Anything else is refused with one line naming the path and why ([`StateError::Refused`]),
//! before anything is written to sysfs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use passthru_linux::bdf::Bdf;
use passthru_linux::sysfs::{SavedState, Sysfs, SysfsError};

/// The store directory of root.
pub const ROOT_STATE_DIR: &str = "/run/passthru";

/// An error of the state store or of the setup/cleanup built on it (one line each).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Something in the store is not what this user wrote; it is not used.
    #[error("{path}: refusing to use setup state: {why}")]
    Refused {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file-system operation on the store failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No directory the caller alone owns is known.
    #[error("no directory for setup state: XDG_RUNTIME_DIR is not set for this non-root user; set it or pass --state-dir DIR (a directory only you can write)")]
    NoLocation,
    /// `cleanup` was asked to restore a device that has no saved state.
    #[error("{bdf}: no saved state under {dir} (was it set up with `passthru setup`?)")]
    NotSetUp {
        /// The device.
        bdf: Bdf,
        /// The state directory that was searched.
        dir: PathBuf,
    },
    /// A sysfs read or write failed.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn refused(path: &Path, why: impl Into<String>) -> StateError {
    StateError::Refused {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// The files of one device's saved state.
const FILES: [&str; 3] = ["driver", "driver_override", "sriov_numvfs"];

/// Longest file content accepted (driver names are short).
const MAX_FILE: u64 = 256;

/// A plain driver name: what the kernel registers under `/sys/bus/pci/drivers` (letters,
/// digits, `-`, `_`, `.`), never a path.
fn plain_driver_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Where setup state is persisted: one directory per device, `<dir>/<bdf>/`, holding the files
/// `driver`, `driver_override` (empty = none) and, for SR-IOV PFs, `sriov_numvfs`. The state is
/// written (atomically, by renaming a complete temporary directory) before the first sysfs
/// write, so a crash or SIGINT at any point leaves enough to restore.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
    owner: u32,
}

impl StateStore {
    /// A store in `dir`, owned by the effective user.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            owner: nix::unistd::geteuid().as_raw(),
        }
    }

    /// The same store, requiring every entry to belong to `uid` instead of the effective user
    /// (to test the ownership checks without a second account).
    pub fn with_owner(mut self, uid: u32) -> Self {
        self.owner = uid;
        self
    }

    /// `/run/passthru` for root; `$XDG_RUNTIME_DIR/passthru` for other users
    /// ([`StateError::NoLocation`] if that is unset or not absolute).
    pub fn default_location() -> Result<Self, StateError> {
        if nix::unistd::geteuid().is_root() {
            return Ok(Self::new(ROOT_STATE_DIR));
        }
        match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
            Some(d) if d.is_absolute() => Ok(Self::new(d.join("passthru"))),
            _ => Err(StateError::NoLocation),
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<bdf>`.
    pub fn device_dir(&self, bdf: Bdf) -> PathBuf {
        self.dir.join(bdf.to_string())
    }

    /// Checks metadata of something we are about to trust: owner, mode, kind.
    fn check_meta(&self, path: &Path, meta: &fs::Metadata, dir: bool) -> Result<(), StateError> {
        if meta.file_type().is_symlink() {
            return Err(refused(path, "is a symbolic link"));
        }
        if dir && !meta.is_dir() {
            return Err(refused(path, "is not a directory"));
        }
        if !dir && !meta.is_file() {
            return Err(refused(path, "is not a regular file"));
        }
        if meta.uid() != self.owner {
            return Err(refused(
                path,
                format!("owned by uid {}, not by uid {}", meta.uid(), self.owner),
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(refused(
                path,
                format!("group- or world-writable (mode {mode:04o})"),
            ));
        }
        Ok(())
    }

    /// The store's parent may not let anyone else replace the store: owned by root or the
    /// owner, and writable by others only with the sticky bit (as `/tmp`).
    fn check_parent(&self) -> Result<(), StateError> {
        let parent = match self.dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let meta = fs::metadata(parent).map_err(io_err("stat", parent))?;
        if meta.uid() != 0 && meta.uid() != self.owner {
            return Err(refused(
                &self.dir,
                format!(
                    "its parent {} is owned by uid {}, not by root or uid {}",
                    parent.display(),
                    meta.uid(),
                    self.owner
                ),
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(refused(
                &self.dir,
                format!(
                    "its parent {} is writable by others and not sticky (mode {mode:04o})",
                    parent.display()
                ),
            ));
        }
        Ok(())
    }

    /// Opens a directory without following a symlink and checks it; `None` if it is absent.
    fn open_dir(&self, path: &Path) -> Result<Option<File>, StateError> {
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.explain_open_error(path, e, true)),
        };
        let meta = f.metadata().map_err(io_err("stat", path))?;
        self.check_meta(path, &meta, true)?;
        Ok(Some(f))
    }

    /// Turns an `O_NOFOLLOW`/`O_DIRECTORY` failure into the reason (symlink, wrong kind).
    fn explain_open_error(&self, path: &Path, e: io::Error, dir: bool) -> StateError {
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => refused(path, "is a symbolic link"),
            Ok(m) if dir && !m.is_dir() => refused(path, "is not a directory"),
            Ok(m) if !dir && !m.is_file() => refused(path, "is not a regular file"),
            _ => io_err("open", path)(e),
        }
    }

    /// Reads one state file (O_NOFOLLOW, checked on the descriptor); `None` if absent.
    fn read_file(&self, path: &Path) -> Result<Option<String>, StateError> {
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.explain_open_error(path, e, false)),
        };
        let meta = f.metadata().map_err(io_err("stat", path))?;
        self.check_meta(path, &meta, false)?;
        if meta.len() > MAX_FILE {
            return Err(refused(path, format!("is {} bytes long", meta.len())));
        }
        let mut text = String::new();
        Read::by_ref(&mut f)
            .take(MAX_FILE)
            .read_to_string(&mut text)
            .map_err(|_| refused(path, "is not UTF-8 text"))?;
        Ok(Some(text.trim_end_matches('\n').to_owned()))
    }

    /// Opens and checks the store directory; `None` if it does not exist yet.
    fn open_store(&self) -> Result<Option<File>, StateError> {
        self.check_parent()?;
        self.open_dir(&self.dir)
    }

    /// Devices with saved state, sorted; every entry is checked as [`StateStore::load`] does.
    pub fn list(&self, sysfs: &Sysfs) -> Result<Vec<Bdf>, StateError> {
        if self.open_store()?.is_none() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))? {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            let name = entry.file_name();
            let path = entry.path();
            let Some(name) = name.to_str() else {
                return Err(refused(&path, "name is not UTF-8"));
            };
            // A temporary directory of an interrupted save: never used, removed on the next.
            if name.starts_with('.') && name.contains(".tmp.") {
                continue;
            }
            let bdf = Bdf::parse(name)
                .map_err(|_| refused(&path, "name is not a PCI address (0000:00:04.0)"))?;
            if self.load_checked(sysfs, bdf)?.is_some() {
                out.push(bdf);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The saved state of `bdf`, if any, after every check in the module docs. The whole store
    /// is checked, not only `bdf`'s entry: one foreign entry means the store is not ours.
    pub fn load(&self, sysfs: &Sysfs, bdf: Bdf) -> Result<Option<SavedState>, StateError> {
        if !self.list(sysfs)?.contains(&bdf) {
            return Ok(None);
        }
        self.load_checked(sysfs, bdf)
    }

    /// [`StateStore::load`] once the store itself was checked.
    fn load_checked(&self, sysfs: &Sysfs, bdf: Bdf) -> Result<Option<SavedState>, StateError> {
        let dir = self.device_dir(bdf);
        if self.open_dir(&dir)?.is_none() {
            return Ok(None);
        }
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name();
            if !FILES.iter().any(|f| name == *f) {
                return Err(refused(&entry.path(), "unexpected entry"));
            }
        }
        if !sysfs.exists(bdf) {
            return Err(refused(
                &dir,
                format!(
                    "no PCI function {bdf} under {}",
                    sysfs.pci_devices_dir().display()
                ),
            ));
        }
        let required = |name: &str| -> Result<String, StateError> {
            let path = dir.join(name);
            self.read_file(&path)?
                .ok_or_else(|| refused(&path, "missing"))
        };
        let driver_path = dir.join("driver");
        let driver = Some(required("driver")?).filter(|d| !d.is_empty());
        if let Some(d) = &driver {
            if !plain_driver_name(d) || !sysfs.driver_dir(d).is_dir() {
                return Err(refused(
                    &driver_path,
                    format!(
                        "{d:?} is not a driver under {}",
                        sysfs.driver_dir("").display()
                    ),
                ));
            }
        }
        let override_path = dir.join("driver_override");
        let driver_override = Some(required("driver_override")?).filter(|d| !d.is_empty());
        if let Some(d) = &driver_override {
            if !plain_driver_name(d) {
                return Err(refused(
                    &override_path,
                    format!("{d:?} is not a driver name"),
                ));
            }
        }
        let numvfs_path = dir.join("sriov_numvfs");
        let sriov_numvfs = match self.read_file(&numvfs_path)? {
            None => None,
            Some(text) => {
                let n: u32 = text
                    .parse()
                    .map_err(|_| refused(&numvfs_path, format!("{text:?} is not a VF count")))?;
                match sysfs.sriov_totalvfs(bdf)? {
                    Some(total) if n <= total => Some(n),
                    Some(total) => {
                        return Err(refused(
                            &numvfs_path,
                            format!("{n} VFs but {bdf} supports {total}"),
                        ))
                    }
                    None => {
                        return Err(refused(
                            &numvfs_path,
                            format!("{bdf} is not an SR-IOV physical function"),
                        ))
                    }
                }
            }
        };
        Ok(Some(SavedState {
            driver,
            driver_override,
            sriov_numvfs,
        }))
    }

    /// Creates the store (mode 0700) if needed and checks it.
    fn ensure_store(&self) -> Result<(), StateError> {
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(io_err("create", parent))?;
            }
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &self.dir)(e)),
        }
        self.open_store()?;
        Ok(())
    }

    /// Persists `state` for `bdf` (all files, then one rename). Files are created exclusively
    /// with mode 0600 inside a fresh 0700 directory.
    pub fn save(&self, bdf: Bdf, state: &SavedState) -> Result<(), StateError> {
        self.ensure_store()?;
        let tmp = self.dir.join(format!(".{bdf}.tmp.{}", std::process::id()));
        match fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &tmp)(e)),
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io_err("create", &tmp))?;
        let put = |name: &str, value: &str| {
            let p = tmp.join(name);
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&p)
                .and_then(|mut f| f.write_all(value.as_bytes()))
                .map_err(io_err("write", &p))
        };
        put("driver", state.driver.as_deref().unwrap_or(""))?;
        put(
            "driver_override",
            state.driver_override.as_deref().unwrap_or(""),
        )?;
        if let Some(n) = state.sriov_numvfs {
            put("sriov_numvfs", &n.to_string())?;
        }
        let dest = self.device_dir(bdf);
        fs::rename(&tmp, &dest).map_err(io_err("rename", &dest))
    }

    /// Forgets `bdf`.
    pub fn remove(&self, bdf: Bdf) -> Result<(), StateError> {
        if self.open_store()?.is_none() {
            return Ok(());
        }
        let dir = self.device_dir(bdf);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &dir)(e)),
        }
    }
}

/// What `setup` did to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupOutcome {
    /// The device was bound to vfio-pci; the state before is saved.
    Bound(SavedState),
    /// The device already had saved state (set up before, maybe interrupted); binding was
    /// completed without overwriting the saved state.
    AlreadySetUp(SavedState),
}

/// `passthru setup` for one device: checks the device and the store, saves the device's state
/// (unless state is already saved), then binds it to vfio-pci ([`Sysfs::bind_vfio`]).
pub fn setup(
    sysfs: &Sysfs,
    store: &StateStore,
    bdf: Bdf,
    force: bool,
) -> Result<SetupOutcome, StateError> {
    let current = sysfs.check_vfio_setup(bdf, force)?;
    let outcome = match store.load(sysfs, bdf)? {
        Some(saved) => SetupOutcome::AlreadySetUp(saved),
        None => {
            store.save(bdf, &current)?;
            SetupOutcome::Bound(current)
        }
    };
    sysfs.bind_vfio(bdf)?;
    Ok(outcome)
}

/// `passthru cleanup` for one device: restores the saved state ([`Sysfs::restore`]) and
/// forgets it.
pub fn cleanup(sysfs: &Sysfs, store: &StateStore, bdf: Bdf) -> Result<SavedState, StateError> {
    let saved = store
        .load(sysfs, bdf)?
        .ok_or_else(|| StateError::NotSetUp {
            bdf,
            dir: store.dir().to_path_buf(),
        })?;
    sysfs.restore(bdf, &saved)?;
    store.remove(bdf)?;
    Ok(saved)
}
