namespace Ertas.Mistral.Tokenization;

/// <summary>
/// A few KB of original plain English prose for <see cref="SentencePieceBpeTrainer.TrainDefault"/>: varied topics,
/// digits, punctuation and quotes, so tiny test models get a vocabulary that looks like a real one.
/// </summary>
internal static class EnglishTrainingText
{
    public const string Text = """
        The old lighthouse stood at the edge of the harbour for more than 140 years. Every night its keeper climbed
        the 97 steps of the tower, trimmed the wick and wound the clockwork that turned the great lens. Ships passing
        the rocks saw the beam sweep across the water every 12 seconds, and they knew where they were.

        In 1923 the keeper was a woman named Margaret Hale. She kept a logbook in which she wrote the weather, the
        ships she saw and, now and then, a short note about her day: "Wind from the north-east, strong. Three
        fishing boats came in early. Bread did not rise." Her notes are still read by visitors to the small museum
        that the town opened in the keeper's cottage.

        Cooking is mostly patience. To make a simple loaf, mix 500 grams of flour with 10 grams of salt, 7 grams of
        yeast and 350 millilitres of warm water. Knead the dough for about ten minutes, until it feels smooth and
        springs back when you press it. Let it rest in a warm place for an hour, shape it, and let it rise again.
        Bake it at 220 degrees for 35 minutes. If the bottom sounds hollow when you tap it, the bread is done.

        Why do leaves change colour in autumn? During spring and summer, leaves are full of chlorophyll, the green
        pigment that plants use to turn sunlight into food. As the days grow shorter and colder, trees stop making
        chlorophyll, and the green fades. The yellow and orange pigments that were there all along become visible,
        while some trees also produce red pigments from the sugars trapped in their leaves.

        The train left the station at 8:45 in the morning. Thomas had a window seat, a cup of tea and a paperback
        novel he had bought for 3 pounds at a market stall. Outside, the city gave way to fields, then to hills,
        then to a long grey coastline. He did not read a single page. He watched the world go past and thought
        about the letter in his pocket, which he had not yet opened.

        A computer program is a list of instructions. The computer follows them one at a time, very quickly, and
        never gets bored. If the instructions are wrong, the computer will still follow them exactly; it does not
        know what you meant, only what you wrote. That is why programmers spend so much of their time testing,
        reading error messages and asking themselves, "What did I actually tell it to do?"

        Here is a short list of things to pack for a weekend walk in the mountains: a waterproof jacket, a warm
        hat, two pairs of socks, a map (paper, not only on your phone), a compass, 2 litres of water, some food
        that will not spoil, a small first-aid kit and a torch with spare batteries. Tell someone where you are
        going and when you expect to be back.

        Mathematics is full of surprising patterns. Add the numbers from 1 to 100 and you get 5050. Square the
        number 11 and you get 121; square 111 and you get 12321. Multiply any number by 9, add up the digits of
        the answer, and keep adding until one digit is left: it will always be 9. Children who discover these
        tricks often remember them for the rest of their lives.

        The meeting was scheduled for Tuesday, 4 March, at 10:30. The agenda had six items, but everyone knew that
        only the budget really mattered. The finance team had prepared a report of 48 pages; the summary on the
        first page said that costs had risen by 15% while income had grown by only 6%. Nobody wanted to be the
        first to speak, so for almost a minute the only sound in the room was the hum of the projector.

        Rivers shape the land slowly. Over thousands of years, water carries sand and stones downstream, carving
        valleys and building wide, flat plains near the sea. When a river floods, it spreads fine mud across those
        plains, and that mud makes the soil rich. This is why so many of the world's oldest cities grew up beside
        great rivers, where farmers could grow enough food to feed thousands of people.

        "Are you sure this is the right road?" asked Anna, looking at the map upside down.
        "Quite sure," said her brother. "We turn left after the bridge, then right at the church."
        "There was no church."
        "There will be a church. Trust me."
        Twenty minutes later they found the church, though it was on the left, and it was a barn.

        Good writing is clear writing. Use short words when they do the job. Prefer the active voice: "the dog
        chased the ball" is easier to read than "the ball was chased by the dog". Cut any sentence that does not
        earn its place. Read your work aloud; your ear will catch mistakes that your eye misses. Above all, know
        what you want to say before you try to say it.

        The museum's newest exhibit opened on 21 June with more than 300 objects from the Bronze Age, including
        tools, jewellery, pottery and a bronze sword nearly 3,000 years old. Curators spent two years preparing it.
        Each object has a label in plain language, and children can handle copies of the most important finds.
        Tickets cost 8 pounds for adults and are free for anyone under 16.

        Sleep is not wasted time. While we sleep, the brain sorts the memories of the day, keeping some and letting
        others go. Muscles repair themselves, and the body releases hormones that help us grow and fight illness.
        Most adults need between 7 and 9 hours of sleep each night. Teenagers need even more, although they rarely
        get it, because their body clocks push them to stay up late and sleep in.

        To plant a tree, dig a hole twice as wide as its roots but no deeper. Loosen the roots gently with your
        fingers, set the tree in the hole, and fill it with the soil you removed. Press the soil down firmly and
        water it well. For the first year, water the tree once a week when there is no rain. In ten years you will
        have shade; in fifty, your grandchildren may climb it.

        The weather forecast for tomorrow: cloudy in the morning, with a 60% chance of light rain after midday.
        Temperatures will reach 18 degrees in the south and 14 in the north. Winds will be gentle, from the west.
        By the weekend, a band of high pressure should bring clear skies, cold nights and bright, sunny days.

        She opened the box carefully. Inside, wrapped in yellowed paper, was a pocket watch with a cracked glass
        face. The hands had stopped at 3:17. On the back, someone had engraved a few words: "For J., who was never
        late." She did not know who J. was, but she wound the watch anyway, and to her surprise it began to tick.

        Questions to ask before you buy anything expensive: Do I need it, or do I only want it? Could I borrow
        it, rent it or buy it second-hand? Will I still use it in a year? What would I do with the money
        otherwise? If you still want it after a week of thinking, it is probably a good choice.

        Bees visit flowers to collect nectar and pollen. As they move from one flower to the next, they carry
        pollen with them, which helps the plants make seeds and fruit. About one third of the food we eat depends
        on pollinators like bees. A single hive can hold 50,000 bees in summer, and together they may fly the
        equivalent of three trips around the world to make one jar of honey.

        The final score was 3-2. The home team had been losing at half-time, but two goals in the last 15 minutes
        turned the match around. When the whistle blew, the crowd of 27,000 rose to its feet, and the players ran
        to the corner of the ground to celebrate with their supporters. "We never gave up," said the captain.

        Learning a language takes time. Start with the words you will use every day: hello, please, thank you,
        where, how much, water, bread, left, right. Listen to the language as often as you can, even when you do
        not understand it. Make mistakes, because every mistake teaches you something. After a few months, you
        will be surprised by how much you can say.

        Volcanoes form where molten rock, called magma, escapes through cracks in the crust. Some erupt violently,
        throwing ash kilometres into the sky; others release slow rivers of glowing lava that creep across the
        landscape. Geologists monitor tremors, gas emissions and ground deformation, hoping to predict eruptions
        early enough to evacuate nearby villages. Fertile volcanic soil explains why people keep returning.

        Our neighbourhood orchestra rehearses every Thursday evening in the primary school's gymnasium. There are
        violins, cellos, a double bass, two clarinets, a bassoon, three trumpets and an enthusiastic percussionist
        who owns a xylophone. The conductor, a retired pharmacist, insists on punctuality, tuning and silence
        between movements. Last December we performed a symphony by Dvorak, and nobody in the audience coughed.

        Photosynthesis, respiration, evaporation and condensation are processes every student memorises, yet few
        appreciate how elegantly they connect. Oxygen produced by microscopic algae drifting in the oceans supports
        creatures everywhere, including whales, jellyfish, octopuses, penguins and the humble earthworm quietly
        digesting fallen vegetation beneath our gardens.

        Entrepreneurs frequently underestimate administrative responsibilities: invoices, insurance, accounting,
        licensing, negotiations with suppliers, recruitment and customer complaints. A successful bakery owner once
        explained that kneading dough occupied perhaps twenty percent of her week; spreadsheets, deliveries,
        inspections and marketing swallowed the remainder. Still, she described the work as deeply satisfying.

        Astronomers photograph distant galaxies using telescopes positioned on remote mountaintops or orbiting far
        above the atmosphere. Light arriving tonight may have travelled for billions of years. Studying its spectrum
        reveals temperature, chemical composition and velocity, allowing scientists to reconstruct the history of
        the universe from faint, flickering signals. Amateur stargazers contribute valuable observations, too.

        Grandmother's kitchen smelled of cinnamon, cardamom, roasted almonds and freshly ground coffee. Her recipe
        book, stained and dog-eared, contained handwritten instructions for marmalade, gingerbread, dumplings,
        vegetable soup and a mysterious pudding labelled only "Wednesday". We never discovered why.
        """;
}
