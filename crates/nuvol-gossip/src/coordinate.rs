//! Vivaldi network coordinates with Serf's extensions (height, adjustment
//! window, gravity, latency median filter), so that coordinates exchanged in
//! probe acks mean the same to serf and nuvol nodes and `rtt` estimates agree.
//!
//! Randomness (a random direction when two coordinates coincide) comes from
//! the caller's RNG, keeping the core deterministic.

use rand::Rng;
use std::collections::HashMap;
use std::time::Duration;

const ZERO_THRESHOLD: f64 = 1.0e-6;
/// RTTs outside (0, 10s] are discarded, as serf does.
const MAX_RTT: Duration = Duration::from_secs(10);

/// Serf's coordinate configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dimensionality: usize,
    pub vivaldi_error_max: f64,
    pub vivaldi_ce: f64,
    pub vivaldi_cc: f64,
    pub adjustment_window_size: usize,
    pub height_min: f64,
    pub latency_filter_size: usize,
    pub gravity_rho: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dimensionality: 8,
            vivaldi_error_max: 1.5,
            vivaldi_ce: 0.25,
            vivaldi_cc: 0.25,
            adjustment_window_size: 20,
            height_min: 10.0e-6,
            latency_filter_size: 3,
            gravity_rho: 150.0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoordError {
    #[error("dimensions aren't compatible")]
    Dimensionality,
    #[error("coordinate is invalid")]
    Invalid,
    #[error(
        "round trip time not in valid range, duration {0:?} is not a positive value less than 10s"
    )]
    Rtt(Duration),
    #[error("dimensionality must be at least 1")]
    Config,
}

/// A point in Vivaldi space plus Serf's height and adjustment.
#[derive(Debug, Clone, PartialEq)]
pub struct Coordinate {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl Coordinate {
    pub fn new(cfg: &Config) -> Coordinate {
        Coordinate {
            vec: vec![0.0; cfg.dimensionality],
            error: cfg.vivaldi_error_max,
            adjustment: 0.0,
            height: cfg.height_min,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|x| x.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    pub fn is_compatible_with(&self, other: &Coordinate) -> bool {
        self.vec.len() == other.vec.len()
    }

    fn raw_distance_to(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// Estimated RTT to `other` (serf's DistanceTo). Incompatible or invalid
    /// coordinates give an error instead of a panic.
    pub fn distance_to(&self, other: &Coordinate) -> Result<Duration, CoordError> {
        if !self.is_compatible_with(other) {
            return Err(CoordError::Dimensionality);
        }
        let raw = self.raw_distance_to(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        let d = if adjusted > 0.0 { adjusted } else { raw };
        if !d.is_finite() || d < 0.0 {
            return Err(CoordError::Invalid);
        }
        Ok(Duration::from_secs_f64(d.min(1e9)))
    }

    fn apply_force(
        &self,
        cfg: &Config,
        force: f64,
        other: &Coordinate,
        rng: &mut impl Rng,
    ) -> Coordinate {
        let mut ret = self.clone();
        let (unit, mag) = unit_vector_at(&self.vec, &other.vec, rng);
        for (r, u) in ret.vec.iter_mut().zip(unit) {
            *r += u * force;
        }
        if mag > ZERO_THRESHOLD {
            ret.height =
                ((ret.height + other.height) * force / mag + ret.height).max(cfg.height_min);
        }
        ret
    }
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn unit_vector_at(a: &[f64], b: &[f64], rng: &mut impl Rng) -> (Vec<f64>, f64) {
    let mut ret = diff(a, b);
    let mag = magnitude(&ret);
    if mag > ZERO_THRESHOLD {
        return (ret.iter().map(|x| x / mag).collect(), mag);
    }
    for x in ret.iter_mut() {
        *x = rng.gen::<f64>() - 0.5;
    }
    let m = magnitude(&ret);
    if m > ZERO_THRESHOLD {
        return (ret.iter().map(|x| x / m).collect(), 0.0);
    }
    let mut unit = vec![0.0; ret.len()];
    if let Some(first) = unit.first_mut() {
        *first = 1.0;
    }
    (unit, 0.0)
}

/// Serf's coordinate client: our coordinate, updated from observed RTTs.
#[derive(Debug)]
pub struct Client {
    coord: Coordinate,
    origin: Coordinate,
    cfg: Config,
    adjustment_index: usize,
    adjustment_samples: Vec<f64>,
    latency_samples: HashMap<String, Vec<f64>>,
    /// Times the coordinate was reset after becoming invalid.
    pub resets: u64,
}

impl Client {
    pub fn new(cfg: Config) -> Result<Client, CoordError> {
        if cfg.dimensionality == 0 {
            return Err(CoordError::Config);
        }
        Ok(Client {
            coord: Coordinate::new(&cfg),
            origin: Coordinate::new(&cfg),
            adjustment_index: 0,
            adjustment_samples: vec![0.0; cfg.adjustment_window_size],
            latency_samples: HashMap::new(),
            cfg,
            resets: 0,
        })
    }

    pub fn get_coordinate(&self) -> &Coordinate {
        &self.coord
    }

    pub fn set_coordinate(&mut self, c: Coordinate) -> Result<(), CoordError> {
        self.check(&c)?;
        self.coord = c;
        Ok(())
    }

    pub fn forget_node(&mut self, node: &str) {
        self.latency_samples.remove(node);
    }

    fn check(&self, c: &Coordinate) -> Result<(), CoordError> {
        if !self.coord.is_compatible_with(c) {
            return Err(CoordError::Dimensionality);
        }
        if !c.is_valid() {
            return Err(CoordError::Invalid);
        }
        Ok(())
    }

    /// Median of the last few RTT samples of `node`, in seconds.
    fn latency_filter(&mut self, node: &str, rtt: f64) -> f64 {
        let size = self.cfg.latency_filter_size.max(1);
        let samples = self.latency_samples.entry(node.to_owned()).or_default();
        samples.push(rtt);
        if samples.len() > size {
            samples.remove(0);
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// Update our coordinate with an RTT observed to `node` at `other`.
    pub fn update(
        &mut self,
        node: &str,
        other: &Coordinate,
        rtt: Duration,
        rng: &mut impl Rng,
    ) -> Result<Coordinate, CoordError> {
        self.check(other)?;
        if rtt.is_zero() || rtt > MAX_RTT {
            return Err(CoordError::Rtt(rtt));
        }
        let rtt_s = self.latency_filter(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt_s, rng);
        self.update_adjustment(other, rtt_s);
        self.update_gravity(rng);
        if !self.coord.is_valid() {
            self.resets += 1;
            self.coord = Coordinate::new(&self.cfg);
        }
        Ok(self.coord.clone())
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64, rng: &mut impl Rng) {
        let dist = self.coord.raw_distance_to(other) + self.coord.adjustment + other.adjustment;
        let dist = if dist > 0.0 {
            dist
        } else {
            self.coord.raw_distance_to(other)
        };
        let rtt = rtt.max(ZERO_THRESHOLD);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total_error;
        let ce = self.cfg.vivaldi_ce;
        self.coord.error = (ce * weight * wrongness + self.coord.error * (1.0 - ce * weight))
            .min(self.cfg.vivaldi_error_max);
        let force = self.cfg.vivaldi_cc * weight * (rtt - dist);
        self.coord = self.coord.apply_force(&self.cfg, force, other, rng);
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let n = self.cfg.adjustment_window_size;
        if n == 0 {
            return;
        }
        let dist = self.coord.raw_distance_to(other);
        self.adjustment_samples[self.adjustment_index] = rtt - dist;
        self.adjustment_index = (self.adjustment_index + 1) % n;
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coord.adjustment = sum / (2.0 * n as f64);
    }

    fn update_gravity(&mut self, rng: &mut impl Rng) {
        let dist = self.origin.raw_distance_to(&self.coord)
            + self.origin.adjustment
            + self.coord.adjustment;
        let dist = if dist > 0.0 {
            dist
        } else {
            self.origin.raw_distance_to(&self.coord)
        };
        let force = -(dist / self.cfg.gravity_rho).powi(2);
        let origin = self.origin.clone();
        self.coord = self.coord.apply_force(&self.cfg, force, &origin, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn rejects_bad_input() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut c = Client::new(Config::default()).unwrap();
        let mut other = Coordinate::new(&Config::default());
        assert_eq!(
            c.update("a", &other, Duration::ZERO, &mut rng),
            Err(CoordError::Rtt(Duration::ZERO))
        );
        assert!(c
            .update("a", &other, Duration::from_secs(11), &mut rng)
            .is_err());
        other.vec.push(1.0);
        assert_eq!(
            c.update("a", &other, Duration::from_millis(5), &mut rng),
            Err(CoordError::Dimensionality)
        );
        let mut nan = Coordinate::new(&Config::default());
        nan.vec[0] = f64::NAN;
        assert_eq!(
            c.update("a", &nan, Duration::from_millis(5), &mut rng),
            Err(CoordError::Invalid)
        );
        assert!(Client::new(Config {
            dimensionality: 0,
            ..Config::default()
        })
        .is_err());
    }

    #[test]
    fn latency_filter_takes_median() {
        let mut c = Client::new(Config::default()).unwrap();
        assert_eq!(c.latency_filter("a", 0.201), 0.201);
        assert_eq!(c.latency_filter("a", 0.200), 0.201);
        assert_eq!(c.latency_filter("a", 0.207), 0.201);
        assert_eq!(c.latency_filter("a", 0.300), 0.207);
        assert_eq!(c.latency_filter("a", 0.202), 0.207);
        assert_eq!(c.latency_filter("b", 0.050), 0.050);
    }

    #[test]
    fn two_nodes_converge_to_their_rtt() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut a = Client::new(Config::default()).unwrap();
        let mut b = Client::new(Config::default()).unwrap();
        let rtt = Duration::from_millis(25);
        for _ in 0..100 {
            let cb = b.get_coordinate().clone();
            a.update("b", &cb, rtt, &mut rng).unwrap();
            let ca = a.get_coordinate().clone();
            b.update("a", &ca, rtt, &mut rng).unwrap();
        }
        let est = a
            .get_coordinate()
            .distance_to(b.get_coordinate())
            .unwrap()
            .as_secs_f64();
        assert!((est - 0.025).abs() < 0.005, "estimate {est}");
    }

    /// Nodes on a line with known RTTs: after enough rounds the mean relative
    /// error of all pairwise estimates is small (serf's performance tests
    /// use similar bounds).
    #[test]
    fn simulated_line_network_is_accurate() {
        let n = 10;
        let mut rng = SmallRng::seed_from_u64(42);
        let mut clients: Vec<Client> = (0..n)
            .map(|_| Client::new(Config::default()).unwrap())
            .collect();
        let truth = |i: usize, j: usize| {
            Duration::from_millis(10 * (i as i64 - j as i64).unsigned_abs() + 1)
        };
        for _ in 0..1000 {
            for i in 0..n {
                let j = rng.gen_range(0..n);
                if i == j {
                    continue;
                }
                let cj = clients[j].get_coordinate().clone();
                clients[i]
                    .update(&format!("n{j}"), &cj, truth(i, j), &mut rng)
                    .unwrap();
            }
        }
        let mut err_sum = 0.0;
        let mut count = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let est = clients[i]
                    .get_coordinate()
                    .distance_to(clients[j].get_coordinate())
                    .unwrap()
                    .as_secs_f64();
                let t = truth(i, j).as_secs_f64();
                err_sum += (est - t).abs() / t;
                count += 1.0;
            }
        }
        let mean = err_sum / count;
        assert!(mean < 0.25, "mean relative error {mean}");
    }
}
