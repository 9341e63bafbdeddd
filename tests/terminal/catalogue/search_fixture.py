"""A small, realistic catalogue built straight from the dataclasses, for the search tests.

Independent of the sample catalogue on purpose: the search tests pin ranking behaviour to these
exact texts.
"""
from __future__ import annotations

from terminal.catalogue.model import Package, Service


def _service(id: str, uk: str, en: str, *, short: tuple[str, str] = ("", ""),
             documents: tuple[tuple[str, str], ...] = (), synonyms: tuple[str, ...] = ()) -> Service:
    return Service(
        id=id,
        name={"uk": uk, "en": en} if en else {"uk": uk},
        short={"uk": short[0], "en": short[1]},
        category="test",
        provider={"uk": "Відділ ЦНАП", "en": "ASC department"},
        documents=tuple({"uk": d[0], "en": d[1]} for d in documents),
        term={"uk": "10 днів", "en": "10 days"},
        result={"uk": "Документ", "en": "A document"},
        receive_ways=({"uk": "Особисто", "en": "In person"},),
        legal_acts=(),
        synonyms=synonyms,
    )


SERVICES = (
    _service(
        "passport-abroad",
        "Оформлення та видача паспорта громадянина України для виїзду за кордон",
        "Issuing a passport of a citizen of Ukraine for travelling abroad",
        short=("Біометричний документ для поїздок за кордон",
               "Biometric document for travelling abroad"),
        documents=(("Паспорт громадянина України", "Passport of a citizen of Ukraine"),),
        synonyms=("паспорт для подорожей",)),
    _service(
        "id-card",
        "Оформлення паспорта громадянина України у формі картки (ID-картка)",
        "Issuing the ID card passport of a citizen of Ukraine",
        short=("Паспорт у формі картки з безконтактним електронним носієм",
               "Passport as a card with a contactless chip")),
    _service(
        "residence-registration",
        "Реєстрація місця проживання особи",
        "Registration of a person's place of residence",
        short=("Внесення відомостей про місце проживання до реєстру територіальної громади",
               "Entering the place of residence in the community register"),
        documents=(("Паспорт або інший документ, що посвідчує особу",
                    "Passport or another identity document"),)),
    _service(
        "deregistration",
        "Зняття з реєстрації місця проживання",
        "Deregistration of the place of residence",
        documents=(("Документ, що підтверджує право на житло",
                    "A document confirming the right to the dwelling"),)),
    _service(
        "tax-number",
        "Присвоєння реєстраційного номера облікової картки платника податків",
        "Assigning a taxpayer registration number",
        short=("Реєстрація фізичної особи у Державному реєстрі фізичних осіб – платників податків",
               "Registering an individual in the State Register of taxpayers"),
        synonyms=("ІПН", "ідентифікаційний код", "tax ID")),
    _service(
        "object-ownership",
        "Державна реєстрація права власності на об'єкт нерухомого майна",
        "State registration of ownership of a real estate object",
        short=("Запис до Державного реєстру речових прав на нерухоме майно",
               "Entry into the State Register of Property Rights")),
    _service(
        "criminal-record",
        "Видача довідки про відсутність судимості",
        "Certificate of no criminal record",
        short=("Довідка для працевлаштування, оформлення візи чи усиновлення",
               "A certificate for employment, a visa or adoption")),
    _service(
        "birth-registration",
        "Державна реєстрація народження",
        "State registration of birth",
        documents=(("Паспорти батьків", "Parents' passports"),
                   ("Медичне свідоцтво про народження", "Medical birth certificate"))),
    _service(
        "driving-licence",
        "Обмін посвідчення водія",
        "Exchange of a driving licence",
        short=("Заміна посвідчення водія у зв'язку із закінченням строку дії",
               "Replacing a driving licence that has expired")),
    _service(
        "visa-invitation",
        "Оформлення запрошення для отримання візи",
        "Invitation for obtaining a visa"),
)

PACKAGES = (
    Package(
        id="emalyatko",
        name={"uk": "Комплексна послуга «єМалятко»", "en": "eMalyatko: services at a child's birth"},
        description={"uk": "Реєстрація народження дитини, місця проживання та допомога при народженні",
                     "en": "Birth registration, residence registration and childbirth benefit"},
        services=("birth-registration", "residence-registration"),
        term={"uk": "1 день", "en": "1 day"},
        synonyms=("малятко",)),
    Package(
        id="welcome",
        name={"uk": "Вітаємо у місті", "en": "Welcome to the city"},
        description={"uk": "Для новоприбулих: реєстрація місця проживання та податковий номер",
                     "en": "For newcomers: registration of residence and a tax number"},
        services=("residence-registration", "tax-number"),
        term={"uk": "1 день", "en": "1 day"}),
    Package(
        id="foreigners",
        name={"en": "Foreigners' desk: visa support"},
        description={"en": "Help for foreign citizens"},
        services=("visa-invitation",),
        term={"en": "3 days"}),
)
