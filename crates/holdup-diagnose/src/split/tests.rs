use super::*;

#[test]
fn ranges_parse() {
    let r = TimeRange::parse("0s..20s").unwrap();
    assert_eq!(r.start_s, 0.0);
    assert_eq!(r.end_s, Some(20.0));
    assert!(r.contains(19.9) && !r.contains(20.0));
    assert_eq!(TimeRange::parse("1m..").unwrap().start_s, 60.0);
    assert_eq!(TimeRange::parse("..500ms").unwrap().end_s, Some(0.5));
    assert!(TimeRange::parse("20s").is_err());
    assert!(TimeRange::parse("20s..10s").is_err());
    assert!(TimeRange::parse("2x..3s").is_err());
    assert_eq!(
        TimeRange::parse("30s..60s").unwrap().to_string(),
        "30s..60s"
    );
}

#[test]
fn slo_series_parse_both_forms() {
    let s = SloSeries::parse("# p99 us\n100\n120\n").unwrap();
    assert_eq!(s.points, vec![(0.0, 100.0), (1.0, 120.0)]);
    assert!(!s.unix_time);
    let s = SloSeries::parse("1795390892 2947\n1795390893,4722\n").unwrap();
    assert!(s.unix_time);
    assert_eq!(s.points[1], (1795390893.0, 4722.0));
    assert!(SloSeries::parse("").is_err());
    assert!(SloSeries::parse("abc").is_err());
}

#[test]
fn change_point_finds_a_step() {
    let mut rows = Vec::new();
    for i in 0..20 {
        let noise = if i % 2 == 0 { 0.01 } else { -0.01 };
        let v = if i < 12 { 0.1 } else { 0.5 };
        rows.push(vec![v + noise, 0.3]);
    }
    let (seg, explained) = change_point(&rows).unwrap();
    assert_eq!(seg, Segmentation::Single(12));
    assert!(explained > 0.9, "{explained}");
}

#[test]
fn change_point_finds_a_stretch() {
    let rows: Vec<Vec<f64>> = (0..30)
        .map(|i| vec![if (10..20).contains(&i) { 1.0 } else { 0.0 }])
        .collect();
    let (seg, _) = change_point(&rows).unwrap();
    assert_eq!(seg, Segmentation::Epidemic(10, 20));
    assert!(change_point(&rows[..3]).is_none());
}

#[test]
fn change_point_finds_three_stretches() {
    let rows: Vec<Vec<f64>> = (0..30)
        .map(|i| {
            vec![match i {
                0..=7 => 0.0,
                8..=17 => 1.0,
                _ => 2.0,
            }]
        })
        .collect();
    let (seg, explained) = change_point(&rows).unwrap();
    assert_eq!(seg, Segmentation::Three(8, 18, true));
    assert!(explained > 0.99);
}
