use super::*;
use crate::delivery::page::Urgency;
use crate::fakes::RecordingNotifier;
use crate::severity::Severity;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// An outbox that records the calls made to it and fails confirmations and releases as told.
#[derive(Default)]
struct ScriptedOutbox {
    calls: Mutex<Vec<String>>,
    /// Errors the next confirmations (or releases) answer, in order.
    failures: Mutex<Vec<LedgerError>>,
}

impl ScriptedOutbox {
    fn answer(&self, call: String) -> Result<(), LedgerError> {
        self.calls.lock().unwrap().push(call);
        let mut failures = self.failures.lock().unwrap();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.remove(0))
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Outbox for ScriptedOutbox {
    type Owed = ();
    type Claim = &'static str;

    async fn claim(&self, _: &()) -> Result<Claimed<&'static str, ()>, LedgerError> {
        Ok(Claimed::Taken("claim"))
    }

    async fn confirm(&self, claim: &&'static str, sent: usize) -> Result<(), LedgerError> {
        self.answer(format!("confirm {claim} {sent}"))
    }

    async fn release(&self, claim: &&'static str) -> Result<(), LedgerError> {
        self.answer(format!("release {claim}"))
    }
}

fn page(subject: &str) -> Page {
    Page::new(Severity::High, Urgency::Page, "test", subject, "body")
}

fn busy() -> LedgerError {
    LedgerError::Unavailable {
        operation: "confirm page",
        detail: "TransactionConflictException".into(),
    }
}

#[tokio::test]
async fn a_sent_page_is_confirmed_and_never_released() {
    let (outbox, notifier) = (ScriptedOutbox::default(), RecordingNotifier::default());
    let delivered = deliver(&outbox, &notifier, &"claim", &[page("a")], "test").await;
    assert_eq!(delivered.sent, 1);
    assert!(delivered.error.is_none());
    assert_eq!(outbox.calls(), ["confirm claim 1"]);
    assert_eq!(notifier.pages().len(), 1);
}

#[tokio::test]
async fn a_failed_publish_releases_the_claim_and_says_why() {
    let (outbox, notifier) = (ScriptedOutbox::default(), RecordingNotifier::default());
    notifier.fail_publishes.store(1, Ordering::SeqCst);
    let delivered = deliver(&outbox, &notifier, &"claim", &[page("a")], "test").await;
    assert_eq!(delivered.sent, 0);
    assert!(delivered.error.is_some_and(|e| e.retryable()));
    assert_eq!(outbox.calls(), ["release claim"]);
    assert!(notifier.pages().is_empty());
}

#[tokio::test]
async fn pages_after_a_failed_one_stay_owed_and_those_before_it_are_confirmed() {
    let (outbox, notifier) = (ScriptedOutbox::default(), RecordingNotifier::default());
    let pages = [page("a"), page("b"), page("c")];
    struct SecondFails<'a>(&'a RecordingNotifier, Mutex<usize>);
    impl Notifier for SecondFails<'_> {
        async fn publish(&self, page: &Page) -> Result<(), NotifyError> {
            let n = {
                let mut n = self.1.lock().unwrap();
                *n += 1;
                *n
            };
            if n == 2 {
                return Err(NotifyError::Refused("not allowed".into()));
            }
            self.0.publish(page).await
        }
    }
    let second_fails = SecondFails(&notifier, Mutex::new(0));
    let delivered = deliver(&outbox, &second_fails, &"claim", &pages, "test").await;
    assert_eq!(delivered.sent, 1);
    assert!(delivered.error.is_some_and(|e| !e.retryable()));
    assert_eq!(outbox.calls(), ["confirm claim 1"]);
    let subjects: Vec<_> = notifier
        .pages()
        .iter()
        .map(|p| p.subject().to_owned())
        .collect();
    assert_eq!(subjects, ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_confirmation_that_meets_another_write_is_made_again() {
    let (outbox, notifier) = (ScriptedOutbox::default(), RecordingNotifier::default());
    outbox.failures.lock().unwrap().extend([busy(), busy()]);
    let delivered = deliver(&outbox, &notifier, &"claim", &[page("a")], "test").await;
    assert_eq!(delivered.sent, 1);
    assert_eq!(
        outbox.calls(),
        ["confirm claim 1", "confirm claim 1", "confirm claim 1"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_confirmation_that_keeps_failing_is_given_up_and_the_page_still_counts_as_sent() {
    let (outbox, notifier) = (ScriptedOutbox::default(), RecordingNotifier::default());
    outbox
        .failures
        .lock()
        .unwrap()
        .extend((0..10).map(|_| busy()));
    let delivered = deliver(&outbox, &notifier, &"claim", &[page("a")], "test").await;
    assert_eq!(delivered.sent, 1);
    assert!(delivered.error.is_none());
    assert_eq!(outbox.calls().len(), ATTEMPTS as usize);
}

#[tokio::test(start_paused = true)]
async fn a_refused_confirmation_is_not_made_again() {
    let (outbox, notifier) = (ScriptedOutbox::default(), RecordingNotifier::default());
    outbox.failures.lock().unwrap().push(LedgerError::Refused {
        operation: "confirm page",
        detail: "AccessDenied".into(),
    });
    let delivered = deliver(&outbox, &notifier, &"claim", &[page("a")], "test").await;
    assert_eq!(delivered.sent, 1);
    assert_eq!(outbox.calls(), ["confirm claim 1"]);
}
