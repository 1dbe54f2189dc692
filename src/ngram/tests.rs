//! Unit tests of the n-gram core. The Python tests compare the estimates
//! with a reference implementation and with KenLM; these check the pieces.

use super::arpa::{load_arpa, LoadOptions};
use super::estimate::{discounts, FALLBACK};
use super::words::{escape, unescape, BOS_WORD, EOS_WORD, UNK_WORD};
use super::*;
use crate::vocab::{BuildOptions, Level, Vocab};

fn never() -> bool {
    false
}

fn word_model(text: &str, order: usize, smoothing: Smoothing) -> NGramModel {
    let vocab = Vocab::build(text, Level::Word, &BuildOptions::default()).unwrap();
    NGramModel::fit_text(text, vocab, order, smoothing, &mut never).unwrap()
}

fn id(m: &NGramModel, w: &str) -> u32 {
    m.words().words().iter().position(|x| x == w).unwrap() as u32
}

#[test]
fn escape_round_trips_whitespace_only() {
    assert_eq!(escape("ab"), "ab");
    assert_eq!(escape(" "), "<U+0020>");
    assert_eq!(escape("a\tb\u{3000}"), "a<U+0009>b<U+3000>");
    for w in [" ", "\t", "x y", "\u{85}", "plain", "<U+zz>", "<U+0020"] {
        assert_eq!(unescape(&escape(w)), w, "{w:?}");
    }
    assert_eq!(unescape("<U+1F642>"), "🙂");
    assert_eq!(unescape("<U+D800>"), "<U+D800>"); // not a character: left as written
}

#[test]
fn words_put_the_specials_first() {
    let v = Vocab::build("b a\na\n", Level::Word, &BuildOptions::default()).unwrap();
    let w = Words::new(v.clone()).unwrap();
    assert_eq!(w.words(), ["<unk>", "<s>", "</s>", "a", "b"]);
    assert_eq!(w.word_of(v.unk_id().unwrap()).unwrap(), UNK_WORD);
    assert_eq!(w.word_of(v.eos_id().unwrap()).unwrap(), EOS_WORD);
    assert_eq!(w.vocab_id(BOS_WORD), None);
    assert!(matches!(w.word_of(99), Err(crate::Error::Index(_))));
    let opts = BuildOptions {
        specials: vec!["<eos>".into()],
        ..Default::default()
    };
    let v = Vocab::build("a", Level::Word, &opts).unwrap();
    assert!(matches!(Words::new(v), Err(crate::Error::Value(_))));
}

#[test]
fn counting_sees_sentence_boundaries() {
    let text = "a b\na\n";
    let vocab = Vocab::build(text, Level::Word, &BuildOptions::default()).unwrap();
    let words = Words::new(vocab).unwrap();
    let mut c = Counter::new(words, 3).unwrap();
    c.add_text(text, &mut never).unwrap();
    let counts = c.finish().unwrap();
    assert_eq!(counts.sentences, 2);
    // Bigrams: <s> a (2), a b, b </s>, a </s>.
    assert_eq!(counts.tables[1].len(), 4);
    assert_eq!(counts.counts[1].iter().sum::<u64>(), 5);
    // Trigrams: <s> a b, a b </s>, <s> a </s>.
    assert_eq!(counts.tables[2].len(), 3);
    // <s> is never a counted unigram; </s> twice.
    assert_eq!(counts.counts[0][BOS_WORD as usize], 0);
    assert_eq!(counts.counts[0][EOS_WORD as usize], 2);
}

#[test]
fn discounts_follow_chen_and_goodman_and_fall_back() {
    let t = [0, 10, 5, 3, 2];
    let y = 10.0 / 20.0;
    let d = discounts(Smoothing::ModifiedKneserNey, &t);
    let want = [
        1.0 - 2.0 * y * 0.5,
        2.0 - 3.0 * y * 3.0 / 5.0,
        3.0 - 4.0 * y * 2.0 / 3.0,
    ];
    for (a, b) in d.iter().zip(want) {
        assert!((a - b).abs() < 1e-15);
    }
    assert_eq!(discounts(Smoothing::KneserNey, &t), [y; 3]);
    assert_eq!(
        discounts(Smoothing::ModifiedKneserNey, &[0, 10, 5, 0, 2]),
        FALLBACK
    );
    assert_eq!(discounts(Smoothing::KneserNey, &[0, 0, 5, 3, 2]), [0.5; 3]);
}

#[test]
fn distributions_sum_to_one_and_agree_with_step() {
    let text = "the cat sat on the mat\nthe dog sat\na cat and a dog\n";
    for smoothing in [
        Smoothing::ModifiedKneserNey,
        Smoothing::KneserNey,
        Smoothing::AddK(0.1),
    ] {
        for order in 1..=5 {
            let m = word_model(text, order, smoothing);
            let ctx: Vec<u32> = ["the", "cat", "sat"].iter().map(|w| id(&m, w)).collect();
            for k in 0..=ctx.len() {
                let state = m.advance(m.begin(true), &ctx[..k]);
                let d = m.distribution(&state);
                assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                assert_eq!(d[BOS_WORD as usize], 0.0);
                for (w, &p) in d.iter().enumerate().skip(2) {
                    let (s, _) = m.step(&state, w as u32);
                    assert!((10f64.powf(s.log10) - p).abs() < 1e-12);
                }
            }
        }
    }
}

#[test]
fn arpa_round_trip_and_blanks() {
    let dir = std::env::temp_dir().join(format!("rustrnn-ngram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = word_model("a b c\nb c a\nc a b\n", 3, Smoothing::ModifiedKneserNey);
    let path = dir.join("m.arpa");
    m.save_arpa(&path, &mut never).unwrap();
    let back = load_arpa(&path, LoadOptions::default(), &mut never).unwrap();
    assert_eq!(back.counts(), m.counts());
    for line in ["a b c", "c c b a", "zz a"] {
        let (a, b) = (
            m.score(Input::Text(line), true, true, &mut never).unwrap(),
            back.score(Input::Text(line), true, true, &mut never)
                .unwrap(),
        );
        assert_eq!(a, b, "{line}");
    }
    // A trigram whose prefix and suffix bigrams are missing: both become blanks.
    let pruned = "\\data\\\nngram 1=5\nngram 2=1\nngram 3=1\n\n\\1-grams:\n-1\t<unk>\n-99\t<s>\t-0.5\n\
                  -1\t</s>\n-0.5\ta\t-0.1\n-0.6\tb\t-0.2\n\n\\2-grams:\n-0.3\ta </s>\n\n\\3-grams:\n\
                  -0.05\t<s> b a\n\n\\end\\\n";
    std::fs::write(&path, pruned).unwrap();
    let p = load_arpa(&path, LoadOptions::default(), &mut never).unwrap();
    assert_eq!(p.counts(), [5, 1, 1]);
    let fs = p.full_scores(Input::Text("b a"), true, true).unwrap();
    let got: Vec<(f64, u8)> = fs.iter().map(|(_, s)| (s.log10, s.order)).collect();
    let want = [(-0.5 - 0.6, 1), (-0.05, 3), (-0.3, 2)];
    for ((g, go), (w, wo)) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12 && *go == wo, "{got:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
