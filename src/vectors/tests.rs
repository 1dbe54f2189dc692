use std::path::PathBuf;

use tch::Tensor;

use super::query::{top_k, Neighbours};
use super::stats::{pearson, ranks, spearman};
use super::word2vec::{load, save, ReadOptions};
use super::{Term, WordVectors};

fn toy() -> WordVectors {
    let v = Tensor::from_slice(&[1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, -1.0, 0.0]).view([4, 2]);
    WordVectors::new(["a", "b", "c", "d"].map(String::from).to_vec(), &v).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rustrnn-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn top_k_orders_by_value_then_index_with_nan_last() {
    let v = [0.5, f32::NAN, 0.9, 0.5, -1.0];
    assert_eq!(top_k(&v, 3), vec![2, 0, 3]);
    assert_eq!(top_k(&v, 10), vec![2, 0, 3, 4, 1]);
    assert!(top_k(&v, 0).is_empty());
}

#[test]
fn neighbours_leave_out_the_query_keys() {
    let wv = toy();
    let range = wv.search_range(0, None, None);
    let Neighbours::Top(best) = wv
        .most_similar(&[(Term::Key("a".into()), 1.0)], Some(2), range)
        .unwrap()
    else {
        panic!("expected the top neighbours")
    };
    let keys: Vec<&str> = best.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["b", "c"]);
    let want = 0.9 / (0.81f32 + 0.01).sqrt();
    assert!((best[0].1 - want).abs() < 1e-6);
    assert_eq!(
        wv.doesnt_match(&["a".into(), "b".into(), "d".into()])
            .unwrap(),
        "d"
    );
    assert_eq!(wv.rank("a", "c").unwrap(), 2);
}

#[test]
fn ranks_average_ties_and_correlations_match_known_values() {
    assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    // scipy.stats.pearsonr([1, 2, 3, 4], [1, 3, 2, 4]) = (0.8, 0.2).
    let p = pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]);
    assert!((p.statistic - 0.8).abs() < 1e-12 && (p.pvalue - 0.2).abs() < 1e-9);
    let s = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]);
    assert!((s.statistic - 0.8).abs() < 1e-12 && (s.pvalue - 0.2).abs() < 1e-9);
    assert!(pearson(&[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0])
        .statistic
        .is_nan());
}

#[test]
fn both_formats_round_trip_exactly() {
    let wv = toy();
    for binary in [false, true] {
        let path = tmp(if binary { "v.bin" } else { "v.txt" });
        save(&wv, &path, binary, true).unwrap();
        let back = load(
            &path,
            ReadOptions {
                binary,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(back.keys(), wv.keys());
        assert_eq!(back.data(), wv.data());
    }
}

#[test]
fn a_header_wider_than_the_file_is_refused_before_allocating() {
    let path = tmp("huge.txt");
    std::fs::write(&path, "1 4611686018427387904\na 1\n").unwrap();
    let err = load(&path, ReadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("width"), "{err}");
}
