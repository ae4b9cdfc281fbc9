//! Reading what a criterion run left in `target/criterion`: for each benchmark, its id and
//! throughput (`new/benchmark.json`) and its estimates (`new/estimates.json`), so
//! `curfew-next-fire` can record them in `target/curfew-bench.json` without parsing terminal
//! output. `new/` is the latest run; criterion keeps the one before in `base/`.

use std::path::Path;

use serde_json::Value;

/// One benchmark's mean from its latest run.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The benchmark group (`next_fire_mix`).
    pub group: String,
    /// The function within the group (`all`).
    pub function: String,
    /// Mean time per iteration, ns, with criterion's 95% confidence interval.
    pub mean_ns: f64,
    /// Lower bound of the mean's interval, ns.
    pub lower_ns: f64,
    /// Upper bound of the mean's interval, ns.
    pub upper_ns: f64,
    /// Elements per iteration, when the benchmark declared `Throughput::Elements`.
    pub elements: Option<u64>,
}

impl Estimate {
    /// Mean time per element (per iteration when no element count was declared), ns.
    pub fn per_element_ns(&self) -> f64 {
        self.mean_ns / self.elements.unwrap_or(1).max(1) as f64
    }

    /// `(lower, upper)` of the mean's interval per element, ns.
    pub fn per_element_interval_ns(&self) -> (f64, f64) {
        let n = self.elements.unwrap_or(1).max(1) as f64;
        (self.lower_ns / n, self.upper_ns / n)
    }

    /// Reads one benchmark's `benchmark.json` and `estimates.json` texts.
    ///
    /// # Errors
    /// Names the field that is missing or not of the expected type.
    pub fn parse(benchmark_json: &str, estimates_json: &str) -> Result<Estimate, String> {
        let id: Value =
            serde_json::from_str(benchmark_json).map_err(|e| format!("benchmark.json: {e}"))?;
        let estimates: Value =
            serde_json::from_str(estimates_json).map_err(|e| format!("estimates.json: {e}"))?;
        let text = |v: &Value, field: &str| {
            v.get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("benchmark.json: no string {field}"))
        };
        let number = |pointer: &str| {
            estimates
                .pointer(pointer)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("estimates.json: no number at {pointer}"))
        };
        Ok(Estimate {
            group: text(&id, "group_id")?,
            // A benchmark made with `bench_function` on the top level has no function id.
            function: text(&id, "function_id").unwrap_or_default(),
            mean_ns: number("/mean/point_estimate")?,
            lower_ns: number("/mean/confidence_interval/lower_bound")?,
            upper_ns: number("/mean/confidence_interval/upper_bound")?,
            elements: id.pointer("/throughput/Elements").and_then(Value::as_u64),
        })
    }
}

/// Every benchmark under `criterion_dir` (two levels: group, then function), sorted by group
/// and function.
///
/// # Errors
/// When the directory cannot be read, or a benchmark's files cannot be read or parsed.
pub fn read_all(criterion_dir: &Path) -> Result<Vec<Estimate>, String> {
    let entries = |dir: &Path| {
        std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .collect::<Vec<_>>()
            })
    };
    let mut all = Vec::new();
    for group in entries(criterion_dir)? {
        if !group.is_dir() {
            continue;
        }
        for bench in entries(&group)? {
            let new = bench.join("new");
            let (Ok(id), Ok(estimates)) = (
                std::fs::read_to_string(new.join("benchmark.json")),
                std::fs::read_to_string(new.join("estimates.json")),
            ) else {
                // criterion's `report` directories and benchmarks never run have no `new/`.
                continue;
            };
            all.push(
                Estimate::parse(&id, &estimates).map_err(|e| format!("{}: {e}", new.display()))?,
            );
        }
    }
    all.sort_by(|a, b| (&a.group, &a.function).cmp(&(&b.group, &b.function)));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape criterion 0.8 writes, trimmed to what is read (and one field it is not).
    const BENCHMARK: &str = r#"{"group_id":"next_fire_mix","function_id":"all","value_str":null,
        "throughput":{"Elements":70},"full_id":"next_fire_mix/all",
        "directory_name":"next_fire_mix/all","title":"next_fire_mix/all"}"#;
    const ESTIMATES: &str = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,
        "lower_bound":100100.0,"upper_bound":114800.0},"point_estimate":107100.0,
        "standard_error":3700.0},
        "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,
        "upper_bound":2.0},"point_estimate":1.5,"standard_error":0.1}}"#;

    #[test]
    fn the_mean_per_element_comes_from_the_estimates_and_the_declared_throughput() {
        let e = Estimate::parse(BENCHMARK, ESTIMATES).unwrap();
        assert_eq!(
            (e.group.as_str(), e.function.as_str()),
            ("next_fire_mix", "all")
        );
        assert_eq!(e.elements, Some(70));
        assert_eq!(e.mean_ns, 107_100.0);
        assert!((e.per_element_ns() - 1530.0).abs() < 1e-9);
        let (lower, upper) = e.per_element_interval_ns();
        assert!((lower - 1430.0).abs() < 1e-9 && (upper - 1640.0).abs() < 1e-9);
    }

    #[test]
    fn without_a_throughput_the_figure_is_per_iteration() {
        let id = r#"{"group_id":"g","function_id":null,"throughput":null}"#;
        let e = Estimate::parse(id, ESTIMATES).unwrap();
        assert_eq!((e.function.as_str(), e.elements), ("", None));
        assert_eq!(e.per_element_ns(), 107_100.0);
    }

    #[test]
    fn a_missing_mean_is_named() {
        let err = Estimate::parse(BENCHMARK, r#"{"median":{}}"#).unwrap_err();
        assert!(err.contains("/mean/point_estimate"), "{err}");
    }

    #[test]
    fn every_benchmark_of_a_criterion_directory_is_read_and_reports_are_skipped() {
        let dir = std::env::temp_dir().join(format!("curfew-criterion-{}", uuid::Uuid::new_v4()));
        let new = dir.join("next_fire_mix/all/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("benchmark.json"), BENCHMARK).unwrap();
        std::fs::write(new.join("estimates.json"), ESTIMATES).unwrap();
        std::fs::create_dir_all(dir.join("report")).unwrap();
        std::fs::create_dir_all(dir.join("next_fire_mix/report")).unwrap();
        let all = read_all(&dir).unwrap();
        assert_eq!(all, vec![Estimate::parse(BENCHMARK, ESTIMATES).unwrap()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
