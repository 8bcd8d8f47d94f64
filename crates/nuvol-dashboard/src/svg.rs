//! The cluster map: nodes placed in two dimensions so that distances on the
//! picture follow the round-trip times the Vivaldi coordinates estimate.
//!
//! Classical multidimensional scaling of the estimated RTT matrix (double
//! centring, then the two leading eigenvectors by power iteration): a few
//! dozen lines with no linear-algebra dependency, and O(n²) per iteration,
//! which is small for the few hundred nodes of a community cloud.

/// 2-D positions, in the matrix's units, for a symmetric distance matrix
/// (`d[i][j]`, `n × n`). Deterministic; degenerate inputs (one node, all
/// distances equal to 0, non-finite values) give finite positions.
pub fn layout(d: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let n = d.len();
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![(0.0, 0.0)];
    }
    let at = |i: usize, j: usize| -> f64 {
        let v = d[i].get(j).copied().unwrap_or(0.0);
        if v.is_finite() {
            v.max(0.0)
        } else {
            0.0
        }
    };
    // B = -1/2 J D² J.
    let mut sq = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let v = at(i, j).max(at(j, i));
            sq[i * n + j] = v * v;
        }
    }
    let row_mean: Vec<f64> = (0..n)
        .map(|i| sq[i * n..(i + 1) * n].iter().sum::<f64>() / n as f64)
        .collect();
    let all_mean = row_mean.iter().sum::<f64>() / n as f64;
    let mut b = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            b[i * n + j] = -0.5 * (sq[i * n + j] - row_mean[i] - row_mean[j] + all_mean);
        }
    }
    let (l1, v1) = leading(&b, n, None);
    let (l2, v2) = leading(&b, n, Some((l1, &v1)));
    (0..n)
        .map(|i| (v1[i] * l1.max(0.0).sqrt(), v2[i] * l2.max(0.0).sqrt()))
        .collect()
}

/// The leading eigenpair of symmetric `b`, after deflating `prev`.
fn leading(b: &[f64], n: usize, prev: Option<(f64, &[f64])>) -> (f64, Vec<f64>) {
    // A fixed, non-symmetric start so results are reproducible.
    let mut v: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 0.618).fract()).collect();
    let mut lambda = 0.0;
    for _ in 0..200 {
        let mut w = vec![0.0; n];
        for (i, wi) in w.iter_mut().enumerate() {
            let row = &b[i * n..(i + 1) * n];
            *wi = row.iter().zip(&v).map(|(a, x)| a * x).sum();
        }
        if let Some((l, u)) = prev {
            let dot: f64 = u.iter().zip(&v).map(|(a, x)| a * x).sum();
            for (wi, ui) in w.iter_mut().zip(u) {
                *wi -= l * ui * dot;
            }
        }
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if !norm.is_finite() || norm < 1e-12 {
            return (0.0, vec![0.0; n]);
        }
        for x in &mut w {
            *x /= norm;
        }
        let delta: f64 = w.iter().zip(&v).map(|(a, x)| (a - x).abs()).sum();
        v = w;
        lambda = norm;
        if delta < 1e-9 {
            break;
        }
    }
    (lambda, v)
}

/// Positions scaled into a `w × h` box with a margin.
pub fn fit(points: &[(f64, f64)], w: f64, h: f64, margin: f64) -> Vec<(f64, f64)> {
    if points.is_empty() {
        return Vec::new();
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let span = (x1 - x0).max(y1 - y0);
    let scale = if span > 1e-12 {
        ((w - 2.0 * margin).min(h - 2.0 * margin)) / span
    } else {
        0.0
    };
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    points
        .iter()
        .map(|&(x, y)| (w / 2.0 + (x - cx) * scale, h / 2.0 + (y - cy) * scale))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
        ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
    }

    #[test]
    fn planar_distances_are_recovered() {
        // Two sites of three nodes each, 40 ms apart, 2 ms within a site.
        let pts = [
            (0.0, 0.0),
            (2.0, 0.0),
            (0.0, 2.0),
            (40.0, 0.0),
            (42.0, 0.0),
            (40.0, 2.0),
        ];
        let d: Vec<Vec<f64>> = pts
            .iter()
            .map(|a| pts.iter().map(|b| dist(*a, *b)).collect())
            .collect();
        let out = layout(&d);
        for i in 0..pts.len() {
            for j in 0..pts.len() {
                let err = (dist(out[i], out[j]) - d[i][j]).abs();
                assert!(err < 1e-3, "{i}-{j}: {err}");
            }
        }
    }

    #[test]
    fn degenerate_inputs_stay_finite() {
        assert!(layout(&[]).is_empty());
        assert_eq!(layout(&[vec![0.0]]), vec![(0.0, 0.0)]);
        let zeros = vec![vec![0.0; 4]; 4];
        let nan = vec![vec![f64::NAN, 1.0], vec![f64::INFINITY]];
        for d in [zeros, nan] {
            for (x, y) in layout(&d) {
                assert!(x.is_finite() && y.is_finite());
            }
        }
        let f = fit(&[(1.0, 1.0), (1.0, 1.0)], 100.0, 50.0, 5.0);
        assert_eq!(f, vec![(50.0, 25.0), (50.0, 25.0)]);
        let f = fit(&[(0.0, 0.0), (10.0, 0.0)], 100.0, 100.0, 10.0);
        assert_eq!(f, vec![(10.0, 50.0), (90.0, 50.0)]);
    }
}
