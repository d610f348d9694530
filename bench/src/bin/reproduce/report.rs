//! Results: one record per measured number (or per failed measurement), written
//! as CSV and as a Markdown table with ratios against native, plus a generated
//! list of where we are ahead and behind.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The native baseline's mode name.
pub const NATIVE: &str = "native";
/// Our stack with a host call per I/O (file + tap backends).
pub const OURS_HOST: &str = "rktio file/tap";
/// Our stack direct (uring + xdp backends).
pub const OURS_DIRECT: &str = "rktio uring/xdp";
/// Our stack direct, network in plaintext (no WireGuard).
pub const OURS_PLAIN: &str = "rktio xdp plaintext";
/// The kernel's authenticated disk encryption: dm-crypt over dm-integrity.
pub const DM_INTEGRITY: &str = "dm-crypt+dm-integrity";

/// One measured number, or the reason there is none.
#[derive(Debug, Clone)]
pub struct Rec {
    /// Figure id, e.g. `fig1b`.
    pub fig: &'static str,
    /// What ran, e.g. `randrw 60/40 buffered, 8 jobs`.
    pub workload: String,
    /// Which system: native, a peer, or one of ours.
    pub mode: String,
    /// What was measured, with its unit, e.g. `read IOPS`.
    pub metric: &'static str,
    /// Whether more is better.
    pub higher_better: bool,
    /// The number, or `Err(why not)`.
    pub value: Result<f64, String>,
}

/// All records of a run, in the order they were taken.
#[derive(Debug, Default)]
pub struct Results {
    /// Every record.
    pub recs: Vec<Rec>,
    /// Notes under a figure: what was not run and why, what the stack reported.
    pub notes: Vec<(&'static str, String)>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Keeps the table readable: 3 significant digits for small numbers, whole ones
/// for large.
pub fn num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Results {
    /// Adds a record and says it on stderr, so a long run shows progress.
    pub fn add(&mut self, r: Rec) {
        match &r.value {
            Ok(v) => eprintln!(
                "  {} | {} | {}: {} {}",
                r.fig,
                r.workload,
                r.mode,
                num(*v),
                r.metric
            ),
            Err(e) => eprintln!("  {} | {} | {}: FAILED: {e}", r.fig, r.workload, r.mode),
        }
        self.recs.push(r);
    }

    /// Adds a note under a figure (said on stderr too).
    pub fn note(&mut self, fig: &'static str, text: String) {
        eprintln!("  {fig}: {text}");
        if !self.notes.iter().any(|n| n.0 == fig && n.1 == text) {
            self.notes.push((fig, text));
        }
    }

    /// The CSV: fig,workload,mode,metric,higher_is_better,value,error.
    pub fn csv(&self) -> String {
        let mut s = String::from("fig,workload,mode,metric,higher_is_better,value,error\n");
        for r in &self.recs {
            let (v, e) = match &r.value {
                Ok(v) => (format!("{v}"), String::new()),
                Err(e) => (String::new(), e.clone()),
            };
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{}",
                r.fig,
                csv_field(&r.workload),
                csv_field(&r.mode),
                csv_field(r.metric),
                r.higher_better,
                v,
                csv_field(&e)
            );
        }
        s
    }

    /// Figures in the order first seen.
    pub fn figs(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = Vec::new();
        for f in self
            .recs
            .iter()
            .map(|r| r.fig)
            .chain(self.notes.iter().map(|n| n.0))
        {
            if !v.contains(&f) {
                v.push(f);
            }
        }
        v
    }

    /// Records of one figure.
    pub fn of(&self, fig: &str) -> Vec<&Rec> {
        self.recs.iter().filter(|r| r.fig == fig).collect()
    }

    /// One figure as a Markdown table: a row per workload and metric, a column per
    /// mode, each cell the value and its ratio to native (or to the figure's
    /// first mode where native did not run).
    pub fn table(&self, fig: &str) -> String {
        let recs = self.of(fig);
        let mut modes: Vec<&str> = Vec::new();
        let mut rows: Vec<(&str, &str)> = Vec::new();
        let mut cell: BTreeMap<(&str, &str, &str), &Rec> = BTreeMap::new();
        for r in &recs {
            if !modes.contains(&r.mode.as_str()) {
                modes.push(&r.mode);
            }
            if !rows.contains(&(r.workload.as_str(), r.metric)) {
                rows.push((&r.workload, r.metric));
            }
            cell.insert((&r.workload, r.metric, &r.mode), r);
        }
        let mut s = String::new();
        let _ = writeln!(s, "| workload | metric | {} |", modes.join(" | "));
        let _ = writeln!(s, "|---|---|{}", "---:|".repeat(modes.len()));
        for (w, m) in rows {
            let base = cell
                .get(&(w, m, NATIVE))
                .or_else(|| cell.get(&(w, m, modes[0])))
                .and_then(|r| r.value.as_ref().ok().copied());
            let cells: Vec<String> = modes
                .iter()
                .map(|mode| match cell.get(&(w, m, mode)) {
                    None => "–".into(),
                    Some(r) => match &r.value {
                        Err(_) => "failed¹".into(),
                        Ok(v) => match base {
                            Some(b) if b != 0.0 && r.mode != NATIVE => {
                                format!("{} ({:.2}x)", num(*v), v / b)
                            }
                            _ => num(*v),
                        },
                    },
                })
                .collect();
            let _ = writeln!(s, "| {w} | {m} | {} |", cells.join(" | "));
        }
        let mut fails: Vec<String> = Vec::new();
        for r in &recs {
            if let Err(e) = &r.value {
                let line = format!("¹ {} / {}: {e}", r.workload, r.mode);
                if !fails.contains(&line) {
                    fails.push(line);
                }
            }
        }
        if !fails.is_empty() {
            s.push('\n');
            for l in fails {
                let _ = writeln!(s, "{l}  ");
            }
        }
        for (_, text) in self.notes.iter().filter(|n| n.0 == fig) {
            let _ = writeln!(s, "\n{text}");
        }
        s
    }

    /// Where our direct mode is ahead of and behind native and each peer, from
    /// the numbers of this run (ties within 5% are called even).
    pub fn verdicts(&self, fig: &str, peers: &[&str]) -> String {
        let recs = self.of(fig);
        let get = |w: &str, m: &str, mode: &str| {
            recs.iter()
                .find(|r| r.workload == w && r.metric == m && r.mode == mode)
                .and_then(|r| r.value.as_ref().ok().copied())
        };
        let mut ahead = Vec::new();
        let mut behind = Vec::new();
        let mut even = Vec::new();
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for r in &recs {
            if seen.contains(&(r.workload.as_str(), r.metric)) {
                continue;
            }
            seen.push((&r.workload, r.metric));
            let Some(ours) = get(&r.workload, r.metric, OURS_DIRECT) else {
                continue;
            };
            for other in std::iter::once(NATIVE).chain(peers.iter().copied()) {
                let Some(o) = get(&r.workload, r.metric, other) else {
                    continue;
                };
                if o == 0.0 {
                    continue;
                }
                let x = if r.higher_better { ours / o } else { o / ours };
                let line = format!("{} {} vs {other}: {x:.2}x", r.workload, r.metric);
                if x > 1.05 {
                    ahead.push(line);
                } else if x < 0.95 {
                    behind.push(line);
                } else {
                    even.push(line);
                }
            }
        }
        let mut s = String::new();
        for (what, v) in [
            ("ahead", ahead),
            ("even (within 5%)", even),
            ("behind", behind),
        ] {
            if !v.is_empty() {
                let _ = writeln!(s, "- {OURS_DIRECT} {what}: {}", v.join("; "));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(workload: &str, mode: &str, v: Result<f64, String>, hb: bool) -> Rec {
        Rec {
            fig: "figx",
            workload: workload.into(),
            mode: mode.into(),
            metric: "x/s",
            higher_better: hb,
            value: v,
        }
    }

    #[test]
    fn table_ratios_failures_and_verdicts() {
        let mut r = Results::default();
        r.add(rec("a", NATIVE, Ok(100.0), true));
        r.add(rec("a", "gocryptfs", Ok(50.0), true));
        r.add(rec("a", OURS_DIRECT, Ok(150.0), true));
        r.add(rec("b", NATIVE, Ok(10.0), true));
        r.add(rec("b", OURS_DIRECT, Err("EBADF, said twice".into()), true));
        r.add(rec("b", OURS_DIRECT, Err("EBADF, said twice".into()), true));
        r.note("figx", "Not run: c.".into());
        let t = r.table("figx");
        assert!(
            t.contains("| a | x/s | 100.0 | 50.00 (0.50x) | 150.0 (1.50x) |"),
            "{t}"
        );
        assert!(t.contains("| b | x/s | 10.00 | – | failed¹ |"), "{t}");
        assert_eq!(t.matches("EBADF, said twice").count(), 1, "{t}");
        assert!(t.contains("Not run: c."));
        let v = r.verdicts("figx", &["gocryptfs"]);
        assert!(
            v.contains("ahead: a x/s vs native: 1.50x; a x/s vs gocryptfs: 3.00x"),
            "{v}"
        );
        // Lower is better: half the time is 2x ahead.
        let mut l = Results::default();
        l.add(rec("t", NATIVE, Ok(2.0), false));
        l.add(rec("t", OURS_DIRECT, Ok(1.0), false));
        assert!(
            l.verdicts("figx", &[])
                .contains("ahead: t x/s vs native: 2.00x")
        );
        let csv = r.csv();
        assert!(
            csv.lines()
                .any(|x| x == "figx,b,rktio uring/xdp,x/s,true,,\"EBADF, said twice\""),
            "{csv}"
        );
    }
}
