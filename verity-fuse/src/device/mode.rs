//! The kernel's error-handling options, and the options of a verified device.

/// What happens when a block's digest does not match (the kernel's `*_on_corruption` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CorruptionMode {
    /// Default: the read fails with `EIO`.
    #[default]
    Eio,
    /// `ignore_corruption`: log the corruption and return the data as read.
    Ignore,
    /// `restart_on_corruption`: the kernel reboots; emulated as a halted device.
    Restart,
    /// `panic_on_corruption`: the kernel panics; emulated as a halted device.
    Panic,
}

/// What happens when reading the data or hash device fails (the kernel's `*_on_error` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IoErrorMode {
    /// Default: the read fails with `EIO`.
    #[default]
    Eio,
    /// `restart_on_error`: the kernel reboots; emulated as a halted device.
    Restart,
    /// `panic_on_error`: the kernel panics; emulated as a halted device.
    Panic,
}

/// Options of a verified device, as the optional parameters of a dm-verity table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Options {
    /// Behaviour on a digest mismatch.
    pub on_corruption: CorruptionMode,
    /// Behaviour on an I/O error of the underlying devices.
    pub on_io_error: IoErrorMode,
    /// `ignore_zero_blocks`: blocks whose expected digest is that of a zero block read as zeroes without
    /// being read or checked.
    pub ignore_zero_blocks: bool,
    /// `check_at_most_once`: a data block is verified on its first read only; later reads return whatever
    /// the device holds. Catches offline tampering only.
    pub check_at_most_once: bool,
    /// Verified hash blocks kept in memory (bounded cache; 0 disables it).
    pub cache_blocks: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            on_corruption: CorruptionMode::Eio,
            on_io_error: IoErrorMode::Eio,
            ignore_zero_blocks: false,
            check_at_most_once: false,
            cache_blocks: 4096,
        }
    }
}

impl Options {
    /// The optional parameters of the kernel table line for these options, in the kernel's spelling.
    pub fn table_args(&self) -> Vec<&'static str> {
        let mut args = Vec::new();
        match self.on_corruption {
            CorruptionMode::Eio => {}
            CorruptionMode::Ignore => args.push("ignore_corruption"),
            CorruptionMode::Restart => args.push("restart_on_corruption"),
            CorruptionMode::Panic => args.push("panic_on_corruption"),
        }
        match self.on_io_error {
            IoErrorMode::Eio => {}
            IoErrorMode::Restart => args.push("restart_on_error"),
            IoErrorMode::Panic => args.push("panic_on_error"),
        }
        if self.ignore_zero_blocks {
            args.push("ignore_zero_blocks");
        }
        if self.check_at_most_once {
            args.push("check_at_most_once");
        }
        args
    }
}
