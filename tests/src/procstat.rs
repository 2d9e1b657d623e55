//! CPU time of processes from `/proc`, for benchmarks and probes that split the cost between
//! the server and rowshift (robust to other load on the machine, unlike wall time).

/// User + system CPU seconds of process `pid` so far (`"self"` for this process), from
/// `/proc/<pid>/stat` (clock ticks of 10 ms); `None` when it cannot be read.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The pid of the test server listening on `port` (its command line names the port).
pub fn server_pid(port: u16) -> Option<String> {
    let needle = format!("--port={port}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let name = e.file_name().into_string().ok()?;
        let cmd = std::fs::read(format!("/proc/{name}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        cmd.split('\0').any(|a| a == needle).then_some(name)
    })
}

/// CPU seconds a set of processes use from a starting point on (benchmarks that split a
/// run's cost between the servers and rowshift).
#[derive(Debug)]
pub struct CpuSince {
    pids: Vec<String>,
    start: Vec<f64>,
}

impl CpuSince {
    /// Start counting for `pids` (`"self"` for this process).
    pub fn start(pids: &[&str]) -> CpuSince {
        let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        let start = pids.iter().map(|p| read(p)).collect();
        CpuSince { pids, start }
    }

    /// CPU seconds each process used since [`CpuSince::start`], in the order given (NaN when
    /// a process could not be read).
    pub fn used(&self) -> Vec<f64> {
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(p, s)| read(p) - s)
            .collect()
    }
}

fn read(pid: &str) -> f64 {
    cpu_seconds(pid).unwrap_or(f64::NAN)
}

/// Busy and total CPU seconds of the whole machine so far (all cores, from `/proc/stat`);
/// `None` when it cannot be read.
pub fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0.0);
    Some(((total - idle) / 100.0, total / 100.0))
}
