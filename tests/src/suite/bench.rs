//! `passthru bench models`: how fast the models copy, compared with the host.
//!
//! For the dsa and ioat models, in immediate and threaded modes, and sizes 4 KiB .. 16 MiB: the
//! time of `memcpy` (driver `memcpy_start` + `memcpy_wait`, one copy each) as bandwidth, and its
//! ratio to the host's `copy_from_slice` of the same size measured in the same run (target
//! ≥ 0.5), each the best of [`REPEATS`] runs. Then the DSA driver's batch preparation cost: `memcpy_start` of the largest batch
//! set on a model in manual mode (so nothing executes), in ns per descriptor written and per
//! copy requested, and the model's execution cost per batched copy.
//!
//! The ioat model is built with XFERCAP 24 (16 MiB) for this benchmark so every size is one
//! descriptor (the default model, like SKX hardware, says 1 MiB). Meaningful numbers need a
//! release build: `cargo run --release -p passthru -- bench models`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use passthru_core::driver::Driver;
use passthru_models::cbdma::CbdmaConfig;
use passthru_models::exec::ExecMode;

use super::models::ModelEnv;
use super::{first_difference, Env};

/// Sizes measured.
pub const SIZES: [u64; 7] = [
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
];

/// The bandwidth ratio (model / host) the models should reach.
pub const TARGET_RATIO: f64 = 0.5;

/// One row of the bandwidth table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `dsa` or `ioat`.
    pub model: &'static str,
    /// `immediate` or `threaded`.
    pub mode: &'static str,
    /// Bytes per copy.
    pub size: u64,
    /// Copies timed.
    pub iterations: u64,
    /// Model bandwidth, bytes per second.
    pub model_bps: f64,
    /// Host `copy_from_slice` bandwidth, bytes per second.
    pub host_bps: f64,
}

impl Row {
    /// model / host.
    pub fn ratio(&self) -> f64 {
        self.model_bps / self.host_bps.max(1.0)
    }
}

/// The DSA batch preparation measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchCost {
    /// Copies requested in one `memcpy_start`.
    pub copies: u64,
    /// 64-byte descriptors the driver wrote (shared copy list + batch descriptors).
    pub descriptors: u64,
    /// Time of `memcpy_start` (nothing executes: manual mode).
    pub start: Duration,
    /// Time for the model to execute everything (`run_until_idle`).
    pub execute: Duration,
}

fn host_bps(size: u64, iterations: u64) -> f64 {
    let src = vec![0x5au8; size as usize];
    let mut dst = vec![0u8; size as usize];
    // Warm up (fault the pages in).
    dst.copy_from_slice(&src);
    let t = Instant::now();
    for _ in 0..iterations {
        black_box(&mut dst).copy_from_slice(black_box(&src));
    }
    (size * iterations) as f64 / t.elapsed().as_secs_f64().max(1e-9)
}

/// Repetitions per measurement; the best (highest bandwidth) counts, which filters out
/// preemption by other load on the machine.
pub const REPEATS: usize = 3;

fn best_of(mut f: impl FnMut() -> Result<f64, String>) -> Result<f64, String> {
    let mut best = 0f64;
    for _ in 0..REPEATS {
        best = best.max(f()?);
    }
    Ok(best)
}

fn iterations_for(size: u64, budget: u64) -> u64 {
    (budget / size).clamp(4, 4096)
}

fn model_bps<E: Env>(env: &mut E, size: u64, iterations: u64) -> Result<f64, String> {
    let src = env.memcpy_region().iova();
    let dst = src + size;
    super::fill_bytes(env.memcpy_region(), 0, size as usize, 0x5a);
    super::fill_bytes(env.memcpy_region(), size as usize, size as usize, 0);
    let copy = |env: &mut E| {
        env.driver()
            .memcpy(src, dst, size, 10_000_000_000)
            .map_err(|e| format!("memcpy of {size:#x}: {e}"))
    };
    copy(env)?; // warm-up
    let t = Instant::now();
    for _ in 0..iterations {
        copy(env)?;
    }
    let secs = t.elapsed().as_secs_f64();
    if let Some(off) = first_difference(env.memcpy_region(), 0, size as usize, size as usize) {
        return Err(format!("copy of {size:#x} wrong at byte {off:#x}"));
    }
    Ok((size * iterations) as f64 / secs.max(1e-9))
}

/// Measure every model × mode × size; `budget` is the bytes copied per measurement.
pub fn bandwidth_rows(budget: u64, sizes: &[u64]) -> Result<Vec<Row>, String> {
    let max = sizes.iter().copied().max().unwrap_or(4096) as usize;
    let region = (2 * max).max(2 << 20).next_power_of_two();
    let mut rows = Vec::new();
    for (mode_name, mode) in [
        ("immediate", ExecMode::Immediate),
        ("threaded", ExecMode::Threaded),
    ] {
        let (mut dsa, _m) = ModelEnv::dsa_with(mode, region).map_err(|e| e.to_string())?;
        let (mut ioat, _c) = ModelEnv::ioat_with(
            CbdmaConfig {
                mode,
                xfercap: 24,
                ..CbdmaConfig::default()
            },
            region,
        )
        .map_err(|e| e.to_string())?;
        for &size in sizes {
            let n = iterations_for(size, budget);
            let host = best_of(|| Ok(host_bps(size, n)))?;
            rows.push(Row {
                model: "dsa",
                mode: mode_name,
                size,
                iterations: n,
                model_bps: best_of(|| model_bps(&mut dsa, size, n))?,
                host_bps: host,
            });
            rows.push(Row {
                model: "ioat",
                mode: mode_name,
                size,
                iterations: n,
                model_bps: best_of(|| model_bps(&mut ioat, size, n))?,
                host_bps: host,
            });
        }
        dsa.finish_driver()?;
        ioat.finish_driver()?;
    }
    Ok(rows)
}

/// Measure the DSA driver's batch preparation (manual-mode model, 64-byte copies).
pub fn dsa_batch_cost() -> Result<BatchCost, String> {
    let (mut env, model) =
        ModelEnv::dsa_with(ExecMode::Manual, 2 << 20).map_err(|e| e.to_string())?;
    let limits = env.driver().limits().map_err(|e| e.to_string())?;
    let copies = limits.max_memcpy_count;
    let per_batch = passthru_drivers::dsa::MAX_COPIES_PER_BATCH;
    let batches = passthru_drivers::dsa::batches_needed(copies, per_batch);
    let first = passthru_drivers::dsa::next_batch_len(copies, per_batch);
    let src = env.memcpy_region().iova();
    let t = Instant::now();
    env.driver()
        .memcpy_start(src, src + 64, 64, copies)
        .map_err(|e| e.to_string())?;
    let start = t.elapsed();
    let t = Instant::now();
    model.run_until_idle();
    let execute = t.elapsed();
    env.driver()
        .memcpy_wait(1_000_000_000)
        .map_err(|e| format!("batch wait: {e}"))?;
    env.finish_driver()?;
    Ok(BatchCost {
        copies,
        descriptors: u64::from(first) + batches,
        start,
        execute,
    })
}

impl<D: Driver<'static, Function: Clone, Clock: Clone>> ModelEnv<D> {
    fn finish_driver(&mut self) -> Result<(), String> {
        self.driver().remove().map_err(|e| e.to_string())
    }
}

fn human(size: u64) -> String {
    if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else {
        format!("{} KiB", size >> 10)
    }
}

/// Format the bandwidth table and the batch costs.
pub fn table(rows: &[Row], batch: &BatchCost) -> String {
    let mut s = String::new();
    s.push_str("model  mode       size     iters   model GB/s   host GB/s   ratio\n");
    for r in rows {
        s.push_str(&format!(
            "{:<6} {:<10} {:>8} {:>6} {:>12.2} {:>11.2} {:>7.2}{}\n",
            r.model,
            r.mode,
            human(r.size),
            r.iterations,
            r.model_bps / 1e9,
            r.host_bps / 1e9,
            r.ratio(),
            if r.ratio() < TARGET_RATIO {
                "  < target 0.5"
            } else {
                ""
            }
        ));
    }
    let ns = batch.start.as_nanos() as f64;
    s.push_str(&format!(
        "dsa batch preparation: {} copies, {} descriptors written, memcpy_start {:.1} us = {:.1} ns/descriptor, {:.2} ns/copy\n",
        batch.copies,
        batch.descriptors,
        ns / 1e3,
        ns / batch.descriptors.max(1) as f64,
        ns / batch.copies.max(1) as f64,
    ));
    s.push_str(&format!(
        "dsa model batch execution: {:.1} ms = {:.1} ns per 64-byte copy\n",
        batch.execute.as_secs_f64() * 1e3,
        batch.execute.as_nanos() as f64 / batch.copies.max(1) as f64
    ));
    s
}

/// The verdict line under the table (how many rows miss [`TARGET_RATIO`]) and the exit code:
/// with `check`, 1 if any row misses the target; without, 0 (report only).
pub fn verdict(rows: &[Row], check: bool) -> (String, i32) {
    let below: Vec<String> = rows
        .iter()
        .filter(|r| r.ratio() < TARGET_RATIO)
        .map(|r| format!("{} {} {}", r.model, r.mode, human(r.size)))
        .collect();
    if below.is_empty() {
        return (
            format!(
                "all {} rows meet the target ratio {TARGET_RATIO}",
                rows.len()
            ),
            0,
        );
    }
    let line = format!(
        "{} of {} rows below the target ratio {TARGET_RATIO}: {}{}",
        below.len(),
        rows.len(),
        below.join(", "),
        if check {
            ""
        } else {
            " (report only; --check fails on this)"
        }
    );
    (line, i32::from(check))
}

/// `passthru bench models [--quick] [--check]`: print the table and a verdict line; exit 0, or
/// 1 on an error, a bad argument or (with `--check`) a row below [`TARGET_RATIO`].
/// `--quick` copies less per measurement (for smoke tests).
pub fn bench_models(args: &[String]) -> i32 {
    let mut budget = 128u64 << 20;
    let mut check = false;
    for a in args {
        match a.as_str() {
            "--quick" | "-q" => budget = 8 << 20,
            "--check" => check = true,
            other => {
                eprintln!(
                    "passthru bench models: unknown argument {other:?} (usage: [--quick] [--check])"
                );
                return 1;
            }
        }
    }
    if cfg!(debug_assertions) {
        println!("# debug build: numbers are not meaningful; use --release");
    }
    let rows = match bandwidth_rows(budget, &SIZES) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("passthru bench models: {e}");
            return 1;
        }
    };
    let batch = match dsa_batch_cost() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("passthru bench models: {e}");
            return 1;
        }
    };
    print!("{}", table(&rows, &batch));
    let (line, code) = verdict(&rows, check);
    println!("{line}");
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_measures_and_verifies() {
        let rows = bandwidth_rows(64 << 10, &[4096, 64 << 10]).unwrap();
        assert_eq!(rows.len(), 2 * 2 * 2);
        assert!(rows.iter().all(|r| r.model_bps > 0.0 && r.host_bps > 0.0));
        let b = dsa_batch_cost().unwrap();
        assert_eq!(b.copies, 32 * 1024);
        assert_eq!(b.descriptors, 1024 + 32);
        let t = table(&rows, &b);
        assert!(t.contains("dsa    threaded"), "{t}");
        assert!(t.contains("ns/descriptor"), "{t}");
    }

    #[test]
    fn rows_below_target_say_so_and_fail_only_with_check() {
        let row = |model_bps: f64| Row {
            model: "dsa",
            mode: "threaded",
            size: 4096,
            iterations: 1,
            model_bps,
            host_bps: 10.0,
        };
        let good = [row(9.0), row(5.0)];
        assert_eq!(verdict(&good, true).1, 0);
        let (line, code) = verdict(&good, false);
        assert_eq!(
            (line.as_str(), code),
            ("all 2 rows meet the target ratio 0.5", 0)
        );
        let bad = [row(9.0), row(4.0)];
        let (line, code) = verdict(&bad, false);
        assert_eq!(code, 0, "report only by default");
        assert!(
            line.starts_with("1 of 2 rows below the target ratio 0.5: dsa threaded 4 KiB"),
            "{line}"
        );
        assert_eq!(verdict(&bad, true).1, 1);
        let batch = BatchCost {
            copies: 1,
            descriptors: 1,
            start: Duration::ZERO,
            execute: Duration::ZERO,
        };
        assert!(table(&bad, &batch).contains("0.40  < target 0.5"));
    }
}
