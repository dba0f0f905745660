//! Pages published to an SNS topic, with message attributes for subscription filter policies.

use super::{describe, is_transient};
use crate::delivery::page::{Notifier, NotifyError, Page};
use aws_config::SdkConfig;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;

#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(sdk: &SdkConfig, topic_arn: &str) -> Self {
        SnsNotifier {
            client: Client::new(sdk),
            topic_arn: topic_arn.to_owned(),
        }
    }

    /// Warm-up during init (see [`super::warm_up`]): read the page topic's attributes.
    pub async fn warm_up(&self) -> Result<(), String> {
        self.client
            .get_topic_attributes()
            .topic_arn(&self.topic_arn)
            .send()
            .await
            .map(|_| ())
            .map_err(|error| describe(&error))
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, page: &Page) -> Result<(), NotifyError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(page.subject())
            .message(page.body());
        for (name, value) in page.attributes() {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| NotifyError::Refused(format!("message attribute {name}: {e}")))?;
            request = request.message_attributes(name, attribute);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) if is_transient(&error) => Err(NotifyError::Unavailable(describe(&error))),
            Err(error) => Err(NotifyError::Refused(describe(&error))),
        }
    }
}
