use super::*;

const TITLE: &str = "REGENCY CAKESTAND 3 TIER";

fn check(text: &str) -> Option<&'static str> {
    let facts = Facts::new(
        TITLE,
        Some("cakestand regency"),
        "Regency tea parties",
        "Serving cakes and tea in regency style",
    );
    rejection(text, TITLE, &facts, 6, 30)
}

#[test]
fn each_rule_rejects_its_case_and_a_good_explanation_passes() {
    assert_eq!(
        check("A three tier regency cakestand suits your afternoon tea parties."),
        None
    );
    assert_eq!(check("Regency cakestand."), Some("length"));
    assert_eq!(
        check("A three tier regency cakestand suits your afternoon tea parties and"),
        Some("unfinished")
    );
    assert_eq!(
        check("We recommend this cakestand to you for regency tea parties."),
        Some("off_message")
    );
    assert_eq!(
        check("A three tier Italian cakestand for your regency tea parties."),
        Some("invented_name")
    );
    // a capitalised word the title holds is no invention
    assert_eq!(
        check("A three tier Regency cakestand for your afternoon tea parties."),
        None
    );
    assert_eq!(check(&"tea ".repeat(31)), Some("length"));
    assert_eq!(
        check("The perfect cakestand for your regency tea parties at home."),
        Some("hype")
    );
    assert_eq!(
        check("A regency cakestand for your tea parties, order today!"),
        Some("hype")
    );
    assert_eq!(
        check("Your regency cakestand with 3 tier, a regency cakestand."),
        Some("title_copy")
    );
    assert_eq!(
        check("Something lovely that you and many happy people enjoy every day."),
        Some("irrelevant")
    );
    assert_eq!(
        check("A pink porcelain regency cakestand for your tea parties."),
        Some("invented_attribute")
    );
    assert_eq!(
        check("A regency cakestand with 5 tiers for your tea parties."),
        Some("invented_attribute")
    );
    assert_eq!(
        check("A regency cakestand holding 200g of cake for your tea parties."),
        Some("invented_attribute")
    );
    assert_eq!(
        check("A regency cakestand at a low price for your tea parties."),
        Some("off_message")
    );
    // a number the title holds is a fact
    assert_eq!(
        check("Its 3 tiers hold cakes for your regency tea parties."),
        None
    );
    assert_eq!(
        check("A stupid regency cakestand for your tea parties and more."),
        Some("unsafe")
    );
    assert_eq!(
        check("I want a regency cakestand for my afternoon tea parties."),
        Some("not_addressed")
    );
    assert_eq!(
        check("A regency cakestand that suits afternoon tea parties at home."),
        Some("not_addressed")
    );
    assert_eq!(
        check("You enjoy serving cakes and tea in regency style with it."),
        Some("prompt_copy")
    );
    assert_eq!(
        check("A regency cakestand for your delicious cakes at tea parties."),
        Some("invented_attribute")
    );
    assert_eq!(
        check("You can eat cakes from this regency cakestand at tea parties."),
        Some("invented_attribute")
    );
    assert_eq!(
        check("You can find a regency cakestand on the shelves of the local store."),
        Some("ungrounded")
    );
}

/// Regression: an attribute of the interest's description (its example item) was accepted
/// as a fact about the item (rules 5 stored "You chose to buy a set of 10 pink polkadot
/// party candles." for SET/10 RED POLKADOT PARTY CANDLES, user 12378).
#[test]
fn an_attribute_is_a_fact_of_the_item_or_part_of_the_interests_name() {
    let title = "SET/10 RED POLKADOT PARTY CANDLES";
    let check = |interest: &str, description: &str, text: &str| {
        let facts = Facts::new(title, Some("party candles"), interest, description);
        rejection(text, title, &facts, 6, 30)
    };
    let polkadot = "Buys polkadot items such as pink polkadot bowl.";
    assert_eq!(
        check(
            "polkadot",
            polkadot,
            "You chose to buy a set of 10 pink polkadot party candles."
        ),
        Some("invented_attribute")
    );
    // the title's own colour and number are facts
    assert_eq!(
        check(
            "polkadot",
            polkadot,
            "You chose to buy a set of 10 red polkadot party candles."
        ),
        None
    );
    // the interest's name may carry a colour the item lacks, where the text names it
    let blue = "Buys blue polkadot items such as blue polkadot bowl.";
    assert_eq!(
        check(
            "blue polkadot",
            blue,
            "Your love of blue polkadot goes with these polkadot party candles."
        ),
        None
    );
    // but not the colour alone, said of the item
    assert_eq!(
        check(
            "blue polkadot",
            blue,
            "Your polkadot party candles come in blue for the table."
        ),
        Some("invented_attribute")
    );
    // nor a number of the description
    assert_eq!(
        check(
            "polkadot",
            "Buys polkadot items such as 6 polkadot cups.",
            "You can light 6 polkadot party candles at the table."
        ),
        Some("invented_attribute")
    );
}

#[test]
fn the_schema_asks_for_one_sentence_within_the_length() {
    let schema = answer_schema(6, 30);
    assert_eq!(
        schema["properties"]["explanation"]["pattern"],
        "^Your? [A-Za-z0-9 ,;:'()&/-]{19,175}[.]$"
    );
    assert_eq!(schema["required"][0], "explanation");
}
